"""The ownership protocol (mixin for CoreWorker): owners serve their objects
to borrowers and count them; borrowers fetch values and tell owners when
they let go.

Every process that holds a ref to an object it does not own is counted by
the owner before the process that handed it the ref lets go (DESIGN.md 3):

1. A worker reports the refs of its caller's that it still holds after a
   call in the call's reply; the caller counts it before releasing the
   call's own holds.  Refs of any other owner the worker registers itself
   (AddBorrower, acknowledged) before it replies.
2. Refs inside returned values: the worker registers the caller with their
   owners before replying; the caller keeps them alive for as long as the
   returned object lives (``Entry.contained``), as put() does.
3. Refs unpickled from a value by get(): the getter registers with their
   owners before get() returns (the value's holder keeps them alive till then).
4. A release (RemoveBorrower) carries how many registrations it ends, and
   goes on the connection that carried our replies to that owner when there
   is one, so it cannot overtake a reply that registered or handed over refs.
"""
from __future__ import annotations

import logging

import zmq

from .. import exceptions, serialization
from ..sockets import messages as m
from ..sockets.messages import GcsMethod, ReturnKind
from .object_ref import ObjectRef
from .pending import PENDING, RPC_TIMEOUT_S
from .task_spec import ACTOR_CREATION_TASK

log = logging.getLogger(__name__)

INLINE, IN_STORE, ERROR, FREED = map(int, (ReturnKind.INLINE, ReturnKind.IN_STORE, ReturnKind.ERROR,
                                           ReturnKind.FREED))


class Ownership:
    # ------------------------------------------------------ owner service ---
    def _serve_object_status(self, identity: bytes, req) -> None:
        entry = self.refs.objects.get(req.object_id)
        if entry is None or not entry.owned:
            self.reply_to(identity, m.ObjectStatusReply(req.request_id, req.object_id, FREED, None))
            return
        if entry.ready:
            self.reply_to(identity, m.ObjectStatusReply(req.request_id, req.object_id,
                                                        entry.kind, entry.data))
            return

        def reply_when_ready(e=entry):
            self.reply_to(identity, m.ObjectStatusReply(req.request_id, req.object_id, e.kind, e.data))
        self.refs.on_ready(entry, reply_when_ready)

    def _request_object_status(self, object_id: bytes, entry) -> None:
        """Ask the owner of a borrowed object for its value/location (lock held)."""
        if entry.fetching or entry.ready:
            return
        owner_id = entry.owner[0]
        if owner_id in self._dead_owners:
            self._fail_owner_died(object_id, entry, self._dead_owners[owner_id])
            return
        endpoint = entry.owner[1]
        if endpoint.startswith("ipc://") and not endpoint.startswith(self._ipc_prefix):
            self._fail_owner_died(object_id, entry, (
                "The ref comes from an earlier zray session (zray.shutdown() ended its owner)."))
            return
        if owner_id not in self._watched_workers and owner_id != self.worker_id:
            self._watch_worker(owner_id)
        entry.fetching = True
        rid = next(self._request_ids)
        self._status_requests[rid] = object_id
        self.loop.send(self.peer(entry.owner[1]), m.encode(m.GetObjectStatus(rid, object_id)))

    def note_caller_alive(self, worker_id: bytes) -> None:
        """A process just sent us a task, so it was alive: store objects it
        owns are read without asking it first; its death comes by the
        subscription (lock held)."""
        if worker_id == self.worker_id or worker_id in self._dead_owners:
            return
        if worker_id not in self._watched_workers:
            if self.gcs_sub is None:   # a task can arrive while connect() waits for the raylet
                self._watch_when_connected.add(worker_id)
            else:
                self._watch_worker(worker_id)
        self._live_owners.add(worker_id)

    def _watch_worker(self, worker_id: bytes) -> None:
        """Learn when an owner we borrow from, or a borrower of ours, dies (GCS
        topic W<id>, plus one query for a death before we subscribed)."""
        self._watched_workers.add(worker_id)
        self.gcs_sub.setsockopt(zmq.SUBSCRIBE, m.worker_topic(worker_id))

        def on_reply(reply):
            if reply.ok and reply.payload:
                self._worker_died(worker_id, reply.payload)
        self.gcs_call_async(GcsMethod.GET_WORKER_DEATH, (worker_id,), on_reply)

    def _worker_died(self, worker_id: bytes, message: str) -> None:
        self._owner_died(worker_id, message)
        self.refs.borrower_died(worker_id)

    def add_borrowers(self, object_ids, worker_id: bytes) -> None:
        """A task reply says ``worker_id`` still holds these objects of ours
        (lock held; before the task's own references are released)."""
        for object_id in object_ids:
            self.refs.add_borrower(object_id, worker_id)
        if object_ids and worker_id not in self._watched_workers:
            self._watch_worker(worker_id)

    def _owner_died(self, owner_id: bytes, message: str) -> None:
        if owner_id in self._dead_owners:
            return
        self._dead_owners[owner_id] = message
        self._live_owners.discard(owner_id)
        for object_id, entry in list(self.refs.objects.items()):
            if not entry.owned and not entry.ready and entry.owner[0] == owner_id:
                self._fail_owner_died(object_id, entry, message)

    def _fail_owner_died(self, object_id, entry, message) -> None:
        entry.fetching = False
        err = exceptions.OwnerDiedError(object_id.hex(), entry.owner[1], detail=message)
        self.set_object_ready(object_id, ERROR, _pickle_error(err))

    def _on_object_status(self, msg) -> None:
        object_id = self._status_requests.pop(msg.request_id, None)
        if object_id is None:
            return
        entry = self.refs.objects.get(object_id)
        if entry is None:
            return
        entry.fetching = False
        if msg.kind == FREED:
            err = exceptions.ObjectLostError(object_id.hex(), entry.owner[1], detail=(
                "The owner no longer has this object (it was freed)."))
            self.set_object_ready(object_id, ERROR, _pickle_error(err))
        else:
            self.set_object_ready(object_id, msg.kind, msg.data)

    # ------------------------------------------------- counting borrowers ---
    def _on_add_borrower(self, identity: bytes, msg) -> None:
        entry = self.refs.objects.get(msg.object_id)
        ok = entry is not None and entry.owned
        if ok:
            self.add_borrowers((msg.object_id,), msg.borrower_id)
        self.reply_to(identity, m.BorrowerAdded(msg.request_id, ok))

    def register_borrowers(self, registrations) -> None:
        """Have owners count borrowers, ``[(object id, owner, borrower id)]``,
        and wait until they have (lock not held).  Our own objects are counted
        at once; an owner that died or does not answer is skipped."""
        pending = []
        self.loop.acquire()
        try:
            for object_id, owner, borrower in registrations:
                owner_id = owner[0]
                if owner_id == borrower:
                    continue
                if owner_id == self.worker_id:
                    self.add_borrowers((object_id,), borrower)
                    continue
                if owner_id in self._dead_owners or not self._same_session(owner[1]):
                    continue
                if owner_id not in self._watched_workers:
                    self._watch_worker(owner_id)
                rid = self._new_request()
                self.loop.send(self.peer(owner[1]), m.encode(m.AddBorrower(rid, object_id, borrower)))
                pending.append((rid, owner_id))
        finally:
            self.loop.release()
        if not pending:
            return
        replies, dead = self._replies, self._dead_owners

        def answered():
            for rid, owner_id in pending:
                if replies.get(rid) is PENDING and owner_id not in dead:
                    return False
            return True

        if not self.loop.wait_until(answered, RPC_TIMEOUT_S):
            log.warning("owners did not confirm %d borrower registration(s) within %ss",
                        len(pending), RPC_TIMEOUT_S)
        for rid, _ in pending:
            replies.pop(rid, None)

    def _same_session(self, endpoint: str) -> bool:
        return not endpoint.startswith("ipc://") or endpoint.startswith(self._ipc_prefix)

    def still_held_after_task(self, ctx, spec) -> list:
        """Refs this process received for a call and still holds after it (in
        actor state, globals, or passed on to a pending task).  Returns the
        caller's, for the reply; registers itself with any other owner now
        (the caller's holds keep those objects alive until we reply).  Counted
        once per entry, so the owner's count matches our single release."""
        caller = spec.owner_id if spec.kind != ACTOR_CREATION_TASK else None  # creation replies go to the GCS
        report, register = [], []
        me = self.worker_id
        self.loop.acquire()
        try:
            self.refs.apply_ref_ops()
            objects = self.refs.objects
            for object_id, owner in ctx.received:
                entry = objects.get(object_id)
                if entry is None or entry.owned or entry.reported or entry.pinned_reason:
                    continue
                if entry.refs <= 0 and entry.task_refs <= 0:
                    continue
                entry.reported = 1
                if owner[0] == caller:
                    report.append(object_id)
                else:
                    register.append((object_id, owner, me))
        finally:
            self.loop.release()
        if register:
            self.register_borrowers(register)
        return report

    def borrow_received(self, received) -> None:
        """Refs get() just unpickled from a value: register with their owners
        the ones we are not counted for yet (lock not held)."""
        register = []
        me = self.worker_id
        self.loop.acquire()
        try:
            # Apply first: a queued release of an older copy must not retire
            # the entry we are about to find already registered.
            self.refs.apply_ref_ops()
            get_entry = self.refs.objects.get
            for object_id, owner in received:
                entry = get_entry(object_id)
                if entry is None:       # dropped again already: nothing to keep
                    continue
                if entry.reported or entry.owned or entry.pinned_reason or owner[0] == me:
                    continue
                entry.reported = 1
                register.append((object_id, owner, me))
        finally:
            self.loop.release()
        if register:
            self.register_borrowers(register)

    def hand_over_returned_refs(self, spec, returned) -> tuple:
        """Refs inside a call's return values, ``[(return index, ObjectRef)]``:
        registers the caller as their borrower with their owners (we still
        hold them) and returns them for the reply's ``contained``."""
        caller = spec.owner_id
        contained, register = [], []
        held, registered = set(), set()
        for index, ref in returned:
            if (index, ref._id) in held:
                continue
            held.add((index, ref._id))
            contained.append((index, ref._id, ref._owner))
            if ref._owner[0] != caller and ref._id not in registered:
                registered.add(ref._id)
                register.append((ref._id, ref._owner, caller))
        if register:
            self.register_borrowers(register)
        return tuple(contained)

    def accept_reply_refs(self, msg, return_ids) -> None:
        """A call's reply: count the worker as a borrower of what it kept, and
        hold the refs inside its return values while those live (lock held;
        before the call's own holds are released)."""
        if msg.borrowed:
            self.add_borrowers(msg.borrowed, msg.worker_id)
        if not msg.contained:
            return
        objects = self.refs.objects
        counted = set()
        for index, object_id, owner in msg.contained:
            owner = tuple(owner)
            ref = ObjectRef(object_id, owner)
            if owner[0] != self.worker_id and object_id not in counted:
                counted.add(object_id)   # the worker registered us once per object
                self.refs.entry_for_ref(object_id, owner).reported += 1
            holder = objects.get(return_ids[index]) if 0 <= index < len(return_ids) else None
            if holder is not None:
                if holder.contained is None:
                    holder.contained = [ref]
                else:
                    holder.contained.append(ref)

    def send_borrower_releases(self, releases) -> None:
        """RemoveBorrower for each ``(object id, owner, count)`` (lock held)."""
        for object_id, owner, count in releases:
            frame = m.encode(m.RemoveBorrower(object_id, self.worker_id, count))
            try:
                if owner[0] in self._callers:
                    # Same connection as our replies to it: cannot overtake one.
                    self.loop.send_routed(self.router, owner[0], frame)
                else:
                    self.loop.send(self.peer(owner[1]), frame)
            except zmq.ZMQError:
                try:
                    self.loop.send(self.peer(owner[1]), frame)
                except zmq.ZMQError as exc:
                    log.warning("could not release borrowed %s: %s", object_id.hex(), exc)

    def pin_captured_refs(self, refs) -> None:
        """Refs captured in a remote function's or class's definition stay
        pinned for the job, as in Ray."""
        self.loop.acquire()
        try:
            for ref in refs:
                self.refs.entry_for_ref(ref._id, ref._owner).pinned_reason = "captured"
        finally:
            self.loop.release()


def _pickle_error(err) -> bytes:
    return serialization.serialize_inline(err, "error")[0]
