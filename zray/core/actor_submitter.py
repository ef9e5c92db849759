"""Actor-call submission: per-actor ordered queues over a direct connection.

Calls from this process to one actor are sent in submission order on one
DEALER (zmq keeps per-connection order), each after its own arguments are
resolved and never before an earlier call.  The actor's address comes from
the GCS (GET_ACTOR_INFO with wait, then ActorChanged broadcasts); when the
GCS says DEAD every queued and in-flight call fails with ActorDiedError.
"""
from __future__ import annotations

import logging
from collections import deque

import zmq

from .. import exceptions, serialization
from ..sockets import messages as m
from ..sockets.messages import GcsMethod, ReturnKind
from .object_api import dependency_error_blob
from .task_events import note_failed_by_owner
from .task_submitter import resolve_args

log = logging.getLogger(__name__)

ERROR = int(ReturnKind.ERROR)   # plain ints on the wire: enums pickle slowly


class ActorCall:
    __slots__ = ("spec", "return_ids", "deps", "unresolved", "cancelled", "retries_left", "nested",
                 "handle_ref", "retry_exceptions")

    def __init__(self, spec, return_ids, deps, retries_left=0, nested=(), handle_ref=None,
                 retry_exceptions=False):
        self.spec = spec
        self.return_ids = return_ids
        self.deps = deps
        self.nested = nested       # owned object ids nested inside the arguments
        self.unresolved = 0
        self.cancelled = False
        self.retries_left = retries_left   # max_task_retries: resend after a restart
        self.handle_ref = handle_ref       # keeps the actor alive until the call is done
        # True or exception types: an error reply of these is retried too (Ray's)
        self.retry_exceptions = retry_exceptions


class ActorState:
    __slots__ = ("actor_id", "state", "endpoint", "sock", "queue", "in_flight", "death_blob",
                 "seq", "owned", "detached", "out_of_scope",
                 "info_pending", "creation_refs", "restartable")

    def __init__(self, actor_id):
        self.actor_id = actor_id
        self.state = "PENDING"
        self.endpoint = None
        self.sock = None
        self.queue: deque = deque()
        self.in_flight: dict = {}
        self.death_blob = None
        self.seq = 0
        self.owned = False
        self.detached = False
        self.out_of_scope = False
        self.info_pending = 0       # GET_ACTOR_INFO(wait) requests not answered yet
        self.creation_refs = None   # refs in the creation arguments, held while it may read them
        self.restartable = False


class ActorSubmitter:
    def __init__(self, core_worker):
        self.cw = core_worker
        self.actors: dict = {}
        self.in_flight: dict = {}           # task_id -> ActorState

    def state_of(self, actor_id: bytes) -> ActorState:
        """State for an actor, subscribing to it on first use (lock held)."""
        st = self.actors.get(actor_id)
        if st is None:
            st = self.actors[actor_id] = ActorState(actor_id)
            cw = self.cw
            cw.gcs_sub.setsockopt(zmq.SUBSCRIBE, m.actor_topic(actor_id))
            self._request_info(st)
        return st

    def _request_info(self, st: ActorState) -> None:
        """Ask the GCS for the actor's state once it is ALIVE or DEAD (lock held)."""
        st.info_pending += 1
        self.cw.gcs_call_async(GcsMethod.GET_ACTOR_INFO, (st.actor_id, True),
                               lambda reply: self._on_actor_info(st, reply))

    def register_owned(self, actor_id: bytes, detached: bool) -> None:
        st = self.state_of(actor_id)
        st.owned = True
        st.detached = detached

    def hold_for_creation(self, actor_id: bytes, refs: list, restartable: bool) -> None:
        """Keep the objects in an actor's creation arguments alive until the
        actor is ALIVE (it registered as a borrower of what it kept before
        its creation task replied) or, if it can restart, until it is DEAD."""
        st = self.state_of(actor_id)
        st.creation_refs = refs
        st.restartable = restartable
        if st.state == "DEAD" or (st.state == "ALIVE" and not restartable):
            st.creation_refs = None

    # ------------------------------------------------------------ submit ---
    def submit(self, call: ActorCall) -> None:
        """Lock held."""
        st = self.state_of(call.spec.actor_id)
        if st.state == "DEAD":
            self._fail(call, st.death_blob)
            return
        if not call.deps and not st.queue and st.state == "ALIVE":
            self._push(st, call)   # the common case: nothing to wait for or behind
            return
        st.queue.append(call)
        if call.deps:
            self.cw.track_dependencies(call, lambda c: self._flush(st))
        else:
            self._flush(st)

    def _push(self, st: ActorState, call: ActorCall) -> None:
        task_id = call.spec.task_id
        st.in_flight[task_id] = call
        self.in_flight[task_id] = st
        self.cw.loop.send(st.sock, m.encode(m.PushTask(tuple(call.spec))))

    def _flush(self, st: ActorState) -> None:
        if st.state == "DEAD":
            while st.queue:
                self._fail(st.queue.popleft(), st.death_blob)
            return
        if st.state != "ALIVE":
            return
        queue = st.queue
        while queue:
            call = queue[0]
            if call.unresolved:
                return
            queue.popleft()
            if call.cancelled:
                continue
            if call.deps:
                resolved, error = resolve_args(call.deps)
                if error is not None:
                    error = dependency_error_blob(error, call.spec)
                    self._finish(call, [(ERROR, error)] * len(call.return_ids))
                    continue
                call.spec = call.spec._replace(resolved=resolved)
            self._push(st, call)

    # ------------------------------------------------------- actor state ---
    def _on_actor_info(self, st: ActorState, reply) -> None:
        st.info_pending -= 1
        if not reply.ok:
            self._mark_dead(st, f"actor info unavailable: {reply.payload[1]}")
            return
        info = reply.payload
        self._apply_state(st, info["state"], info.get("endpoint"), info.get("death_message"),
                          info.get("creation_error"))

    def on_actor_changed(self, msg) -> None:
        st = self.actors.get(msg.actor_id)
        if st is None:
            return
        if msg.state == "DEAD" and st.info_pending:
            # The broadcast carries no creation error; the info reply on its way
            # does (the GCS answers waiting GET_ACTOR_INFO requests on death).
            return
        self._apply_state(st, msg.state, msg.endpoint, msg.death_message, None)

    def _apply_state(self, st, state, endpoint, death_message, creation_error) -> None:
        if st.state == "DEAD":
            return
        if state == "ALIVE":
            if not st.restartable:
                st.creation_refs = None
            if st.state != "ALIVE" or st.endpoint != endpoint:
                st.endpoint = endpoint
                st.sock = self.cw.peer(endpoint)
                st.state = "ALIVE"
            self._flush(st)
        elif state == "DEAD":
            self._mark_dead(st, death_message, creation_error)
        elif state == "RESTARTING" and st.state == "ALIVE":
            st.state = "PENDING"
            self._retry_or_fail_in_flight(st, death_message)
            self._request_info(st)

    def _mark_dead(self, st, death_message, creation_error=None) -> None:
        cause = None
        if creation_error:
            try:
                cause = serialization.deserialize(creation_error)
            except Exception:
                cause = None
        message = death_message or "The actor died unexpectedly."
        if cause is not None:
            message = f"{message}\n{cause}"
        err = exceptions.ActorDiedError(error_msg=message, actor_id=st.actor_id.hex())
        st.state = "DEAD"
        st.creation_refs = None
        st.death_blob = serialization.serialize_inline(err)[0]
        self._fail_in_flight(st, None)
        while st.queue:
            self._fail(st.queue.popleft(), st.death_blob)

    def _retry_or_fail_in_flight(self, st, death_message) -> None:
        """After a restart, calls with max_task_retries left are resent first,
        in their original order; the others fail."""
        blob = None
        retry = []
        for task_id, call in sorted(st.in_flight.items(), key=lambda item: item[1].spec.seq_no):
            self.in_flight.pop(task_id, None)
            if call.retries_left != 0:
                call.retries_left -= 1
                retry.append(call)
                continue
            if blob is None:
                blob = serialization.serialize_inline(exceptions.ActorDiedError(
                    error_msg=f"The actor restarted while this call was running: {death_message}",
                    actor_id=st.actor_id.hex()))[0]
            self._fail(call, blob)
        st.in_flight.clear()
        st.queue.extendleft(reversed(retry))

    def _fail_in_flight(self, st, err) -> None:
        blob = st.death_blob if err is None else serialization.serialize_inline(err)[0]
        for task_id, call in list(st.in_flight.items()):
            self.in_flight.pop(task_id, None)
            self._fail(call, blob)
        st.in_flight.clear()

    def _fail(self, call, blob) -> None:
        self._finish(call, [(ERROR, blob)] * len(call.return_ids))

    def _finish(self, call, returns, ran: bool = False) -> None:
        if not ran:       # the actor notes the end of a call it ran itself
            note_failed_by_owner(self.cw, call.spec.task_id, returns)
        cw = self.cw
        for object_id, (kind, data) in zip(call.return_ids, returns):
            cw.set_object_ready(object_id, kind, data)
        for object_id, _ in call.deps:
            cw.refs.remove_task_ref(object_id)
        for object_id in call.nested:
            cw.refs.remove_task_ref(object_id)

    # ------------------------------------------------------------ replies ---
    def on_task_reply(self, msg) -> bool:
        st = self.in_flight.pop(msg.task_id, None)
        if st is None:
            return False
        call = st.in_flight.pop(msg.task_id, None)
        if call is not None:
            if msg.borrowed or msg.contained:   # before the call's own references go
                self.cw.accept_reply_refs(msg, call.return_ids)
            if (call.retry_exceptions and call.retries_left != 0
                    and _raised_retryable(call.retry_exceptions, msg.returns)):
                # The method raised an exception it may retry: send it again
                # now (behind the calls sent since, as Ray's resubmission does,
                # but ahead of queued ones: they may wait for its result).
                call.retries_left -= 1
                if st.state == "ALIVE":
                    self._push(st, call)
                else:
                    st.queue.appendleft(call)
                return True
            self._finish(call, msg.returns, ran=True)
        if st.out_of_scope and not st.in_flight and not st.queue:
            self._send_out_of_scope(st)
        return True

    # ------------------------------------------------------ handle counts ---
    def handles_gone(self, actor_id: bytes) -> None:
        """The last handle of an actor we created is gone in every process
        (its handle object was freed): end it once our calls to it are done,
        as Ray does for non-detached actors (lock held)."""
        st = self.actors.get(actor_id)
        if st is None or not st.owned or st.detached or st.state == "DEAD":
            return
        st.out_of_scope = True
        if not st.in_flight and not st.queue:
            self._send_out_of_scope(st)

    def _send_out_of_scope(self, st) -> None:
        if st.state == "DEAD" or not st.out_of_scope:
            return
        st.out_of_scope = False
        self.cw.gcs_call_async(GcsMethod.ACTOR_OUT_OF_SCOPE, (st.actor_id,), lambda reply: None)

    def cancel(self, task_id: bytes, force: bool, recursive: bool) -> bool:
        st = self.in_flight.get(task_id)
        if st is not None:
            self.cw.loop.send(st.sock, m.encode(m.CancelTask(task_id, force, recursive)))
            return True
        for st in self.actors.values():
            for call in st.queue:
                if call.spec.task_id == task_id:
                    call.cancelled = True
                    blob = serialization.serialize_inline(
                        exceptions.TaskCancelledError(task_id.hex()))[0]
                    self._fail(call, blob)
                    return True
        return False


def _raised_retryable(allowed, returns) -> bool:
    """Whether the call's error is the method's own exception of a kind
    ``allowed`` (True: any) - not the actor's death or a cancellation."""
    for kind, data in returns:
        if kind == ERROR:
            try:
                err = serialization.deserialize(data)
            except Exception:
                return False
            cause = getattr(err, "cause", None)
            if not isinstance(err, exceptions.RayTaskError) or isinstance(
                    cause, exceptions.TaskCancelledError):
                return False
            return allowed is True or isinstance(cause, tuple(allowed))
    return False
