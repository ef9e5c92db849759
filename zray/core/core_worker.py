"""CoreWorker: the zray runtime inside every driver and worker process.

Owns this process's sockets (through its IoLoop), its reference table and
in-process object store, and the task / actor submitters and executor.

Sockets:
    router      ROUTER bound on ipc: task pushes from owners, owner-service
                requests (GetObjectStatus) from borrowers
    raylet      DEALER to the local raylet: leases, object store, blocking
    gcs         DEALER to the GCS: KV, actors, jobs
    gcs_sub     SUB to the GCS: actor state changes
    peers       one DEALER per remote core worker we push tasks to or
                borrow from; their replies come back on it
"""
from __future__ import annotations

from collections import deque
import gc
import itertools
import logging
import os
import threading
import time

import zmq

from .. import exceptions, ids, runtime_env
from ..sockets import messages as m
from ..sockets import transport
from ..sockets.messages import GcsMethod, ReturnKind
from .io_loop import IoLoop
from .reference_table import ReferenceTable
from .task_events import TaskEventBuffer
from .function_manager import FunctionManager
from .object_api import ObjectApi
from .ownership import Ownership
from .pending import PENDING as _PENDING, RPC_TIMEOUT_S
from .pin_cache import PinCache
from .process_state import current_task  # noqa: F401  (the executor imports it from here)
from .submission import Submission

log = logging.getLogger(__name__)

# Plain ints on the wire: an IntEnum member pickles as a constructor call.
INLINE, IN_STORE, ERROR, FREED = map(int, (ReturnKind.INLINE, ReturnKind.IN_STORE, ReturnKind.ERROR,
                                           ReturnKind.FREED))
JOB_NAMESPACE_KV = "job_namespace"   # GCS KV: job id -> the job's namespace (utf-8)


def collect_garbage_soon() -> None:
    """The raylet's LocalGC (zray/node/gc_trigger.py): run the cyclic collector
    off the loop lock, since finalizers of what it frees may run user code.
    Refs it frees are queued by ObjectRef.__del__ and released at the next tick."""
    threading.Thread(target=gc.collect, name="zray-gc", daemon=True).start()


class TaskContext:
    """What runs now in this thread / asyncio task (for ids and runtime context)."""
    __slots__ = ("task_id", "children", "puts", "function_name", "actor_id", "received",
                 "returned_refs", "resources", "caller", "gpu_ids", "placement_group")

    def __init__(self, task_id, function_name="", actor_id=None, received=None, resources=None,
                 caller=None):
        self.task_id = task_id
        self.caller = caller          # ROUTER identity the call came from (streaming items go there)
        self.gpu_ids = ()             # GPU devices of the lease it runs on
        self.placement_group = None   # (pg id, capture child tasks) of a task run in a group
        self.resources = resources    # a normal task's resource shape (None: Ray's default 1 CPU)
        self.received = received      # [(object id, owner)] refs unpickled while it runs
        self.returned_refs = ()       # (return index, object id, owner) inside its return values
        self.children = 0
        self.puts = 0
        self.function_name = function_name
        self.actor_id = actor_id


class CoreWorker(ObjectApi, Submission, Ownership):
    def __init__(self, *, is_driver: bool, raylet_endpoint: str, session_dir: str,
                 job_id: bytes, namespace: str = "", worker_id: bytes | None = None):
        self.is_driver = is_driver
        self.worker_id = worker_id or ids.random_unique_id()
        self.job_id = job_id
        self.namespace = namespace
        self.session_dir = session_dir
        self.raylet_endpoint = raylet_endpoint
        self.loop = IoLoop("driver" if is_driver else "worker")
        self.refs = ReferenceTable()
        self.task_events = TaskEventBuffer()
        self.ref_ops = self.refs.ref_ops
        self._request_ids = itertools.count(1)
        self._replies: dict = {}
        self._reply_callbacks: dict = {}
        self._pending_releases = deque()   # (object id, offset, size) whose last view died (any thread)
        self.pin_cache = PinCache()
        self.root_context = TaskContext(ids.root_task_id(job_id) if is_driver else
                                        ids.random_unique_id()[:12] + job_id)
        self.actor_id = None
        self.default_job_id = None      # an actor's creating job (for threads it starts)
        self._job_namespaces: dict = {}  # job id -> namespace (workers)
        self.node_id = None
        self.closed = False
        self._store_writer = None
        self._blocked_depth = 0
        self._peers: dict = {}          # endpoint -> DEALER
        self._future_executor = None
        self._status_requests: dict = {}   # request id -> borrowed object id
        self._watched_workers: set = set()
        self._dead_owners: dict = {}       # owner worker id -> death message
        # Callers that pushed us tasks (alive then, watched since): store objects
        # they own whose refs carry a location are read without asking them
        # (object_api.get; note_caller_alive).
        self._live_owners: set = set()
        self.gcs = self.gcs_sub = None     # set by connect(), once the raylet has replied
        self._watch_when_connected: set = set()   # callers seen before that (note_caller_alive)
        self._callers: set = set()         # router identities (= worker ids) that pushed us tasks

        self.router = transport.router()
        sock_dir = os.path.join(session_dir, "sockets")
        self.endpoint = transport.bind_ipc(self.router, os.path.join(sock_dir, "w" + self.worker_id.hex()[:16]))
        self._ipc_prefix = "ipc://" + sock_dir + os.sep   # owners on this node live here
        self.address = (self.worker_id, self.endpoint)
        self.raylet = transport.dealer(self.worker_id)
        self.raylet.connect(raylet_endpoint)
        self.loop.add_socket(self.router, self._on_router, multipart=True)
        self.loop.add_socket(self.raylet, self._on_raylet)

        from .task_submitter import TaskSubmitter
        from .actor_submitter import ActorSubmitter
        from .object_ref_generator import GeneratorStreams
        self.functions = FunctionManager(self)
        self.tasks = TaskSubmitter(self)
        self.actors = ActorSubmitter(self)
        self.generator_streams = GeneratorStreams(self)
        # runtime_env env_vars that this process's tasks and actors inherit (the
        # job's on a driver, set by init; the ones a worker was started with).
        self.runtime_env = () if is_driver else runtime_env.of_this_worker()
        self.executor = None            # set by worker_main for worker processes
        self.loop.add_tick(self._tick)

    # ------------------------------------------------------------ startup ---
    def connect(self, timeout: float = 20.0) -> None:
        self.loop.acquire()
        try:
            self._replies[0] = _PENDING   # RegisterClientReply is matched by id 0
            self.loop.send(self.raylet, m.encode(m.RegisterClient(
                self.worker_id, self.is_driver, os.getpid(), self.endpoint, self.job_id)))
        finally:
            self.loop.release()
        try:
            reply = self.wait_reply(0, timeout, "the raylet to accept this process")
        except exceptions.GetTimeoutError:
            raise ConnectionError(f"could not register with the raylet at {self.raylet_endpoint} "
                                  f"within {timeout}s") from None
        self.node_id = reply.node_id
        self.node_ip = reply.node_ip
        self.arena_path = reply.arena_path
        self.arena_capacity = reply.arena_capacity
        self.gcs_address = reply.gcs_address
        self.gcs_pub_address = reply.gcs_pub_address
        self.loop.acquire()
        try:
            self.gcs = transport.dealer()
            self.gcs.connect(self.gcs_address)
            self.loop.add_socket(self.gcs, self._on_gcs)
            self.gcs_sub = transport.subscriber(topics=())
            self.gcs_sub.connect(self.gcs_pub_address)
            self.loop.add_socket(self.gcs_sub, self._on_gcs_pub, multipart=True)
            for worker_id in self._watch_when_connected - self._watched_workers:
                self._watch_worker(worker_id)
            self._watch_when_connected.clear()
        finally:
            self.loop.release()
        self.loop.start_background()

    # -------------------------------------------------------------- context ---
    def task_context(self) -> TaskContext:
        return current_task.get() or self.root_context

    def current_namespace(self) -> str:
        """The namespace of the job the running code belongs to: the driver's own,
        or in a worker the namespace of the job that submitted the current task
        (published by the driver at init), as Ray's tasks and actors inherit it."""
        if self.is_driver:
            return self.namespace
        ctx = current_task.get()
        job_id = ctx.task_id[12:16] if ctx is not None else self.default_job_id
        if job_id is None:
            return self.namespace
        namespace = self._job_namespaces.get(job_id)
        if namespace is None:
            value = self.gcs_call(GcsMethod.KV_GET, JOB_NAMESPACE_KV, job_id)
            namespace = value.decode() if value else self.namespace
            self._job_namespaces[job_id] = namespace
        return namespace

    def next_task_id(self) -> bytes:
        ctx = current_task.get() or self.root_context
        ctx.children += 1
        return ids.child_task_id(ctx.task_id, ctx.children)

    # ---------------------------------------------------------- messaging ---
    def send_raylet(self, msg) -> None:
        self.loop.acquire()
        try:
            self.loop.send(self.raylet, m.encode(msg))
        finally:
            self.loop.release()

    def peer(self, endpoint: str):
        """DEALER to another core worker (lock held)."""
        sock = self._peers.get(endpoint)
        if sock is None:
            sock = transport.dealer(self.worker_id)
            sock.connect(endpoint)
            self._peers[endpoint] = sock
            self.loop.add_socket(sock, self._on_peer)
        return sock

    def close_peer(self, endpoint: str) -> None:
        sock = self._peers.pop(endpoint, None)
        if sock is not None:
            self.loop.remove_socket(sock)
            sock.close(0)

    def _new_request(self, callback=None) -> int:
        rid = next(self._request_ids)
        if callback is None:
            self._replies[rid] = _PENDING
        else:
            self._reply_callbacks[rid] = callback
        return rid

    def _deliver(self, rid, reply) -> None:
        callback = self._reply_callbacks.pop(rid, None)
        if callback is not None:
            callback(reply)
        elif rid in self._replies:
            self._replies[rid] = reply

    def wait_reply(self, rid: int, timeout: float, what: str):
        replies = self._replies
        if not self.loop.wait_until(lambda: replies[rid] is not _PENDING, timeout):
            replies.pop(rid, None)
            raise exceptions.GetTimeoutError(f"timed out after {timeout}s waiting for {what}")
        return replies.pop(rid)

    def raylet_call(self, make_msg, timeout=RPC_TIMEOUT_S):
        """Send ``make_msg(request_id)`` to the raylet and wait for its reply."""
        self.loop.acquire()
        try:
            rid = self._new_request()
            msg = make_msg(rid)
            self.loop.send(self.raylet, m.encode(msg))
        finally:
            self.loop.release()
        return self.wait_reply(rid, timeout, f"raylet reply to {type(msg).__name__}")

    def gcs_call(self, method: int, *args, timeout: float = RPC_TIMEOUT_S):
        self.loop.acquire()
        try:
            rid = self._new_request()
            self.loop.send(self.gcs, m.encode(m.GcsRequest(rid, int(method), args)))
        finally:
            self.loop.release()
        reply = self.wait_reply(rid, timeout, f"GCS {GcsMethod(method).name}")
        if not reply.ok:
            code, message = reply.payload
            raise GcsError(code, message)
        return reply.payload

    def gcs_call_async(self, method: int, args: tuple, callback) -> None:
        """Send a GCS request; ``callback(reply)`` runs under the lock (lock held)."""
        rid = self._new_request(callback)
        self.loop.send(self.gcs, m.encode(m.GcsRequest(rid, int(method), args)))

    # ----------------------------------------------------------- handlers ---
    def _on_raylet(self, frame) -> None:
        msg = _decode(frame)
        if msg is None:
            return
        kind = type(msg)
        if kind is m.LeaseGranted or kind is m.LeaseFailed or kind is m.LeaseInfeasible:
            self.tasks.on_lease_reply(msg)
        elif kind is m.ReclaimIdleLeases:
            self.tasks.return_idle_leases(force=True)
        elif kind is m.LeasedWorkerDied:
            self.tasks.on_worker_died(msg)
        elif kind is m.LocalGC:
            collect_garbage_soon()
        elif kind is m.RegisterClientReply:
            self._deliver(0, msg)
        elif hasattr(msg, "request_id"):
            self._deliver(msg.request_id, msg)
        else:
            log.warning("unexpected raylet message %s", kind.__name__)

    def _on_gcs(self, frame) -> None:
        msg = _decode(frame)
        if msg is not None and type(msg) is m.GcsReply:
            self._deliver(msg.request_id, msg)

    def _on_gcs_pub(self, frames) -> None:
        if len(frames) != 2:
            return
        msg = _decode(frames[1])
        if msg is None:
            return
        if type(msg) is m.ActorChanged:
            self.actors.on_actor_changed(msg)
        elif type(msg) is m.WorkerDied:
            self._worker_died(msg.worker_id, msg.message)

    def _on_peer(self, frame) -> None:
        msg = _decode(frame)
        if msg is None:
            return
        kind = type(msg)
        if kind is m.TaskReply:
            if not self.tasks.on_task_reply(msg):
                self.actors.on_task_reply(msg)
        elif kind is m.GeneratorItem:
            self.generator_streams.on_item(msg)
        elif kind is m.ObjectStatusReply:
            self._on_object_status(msg)
        elif kind is m.RemoveBorrower:   # sent on our connection to a worker we called
            self.refs.remove_borrower(msg.object_id, msg.worker_id, msg.count)
        elif kind is m.BorrowerAdded or kind is m.ReferenceSummaryReply:
            self._deliver(msg.request_id, msg)
        else:
            log.warning("unexpected peer message %s", kind.__name__)

    def _on_router(self, frames) -> None:
        if len(frames) != 2:
            log.warning("dropped router message with %d frames", len(frames))
            return
        identity, frame = frames
        msg = _decode(frame)
        if msg is None:
            return
        kind = type(msg)
        if kind is m.PushTask or kind is m.CancelTask:
            if self.executor is None:
                log.warning("dropped %s: this process does not execute tasks", kind.__name__)
                return
            if kind is m.PushTask:
                if identity not in self._callers:
                    self._callers.add(identity)
                self.executor.on_push(identity, msg.spec)
            else:
                self.executor.on_cancel(identity, msg)
        elif kind is m.GeneratorConsumed:
            if self.executor is not None:
                self.executor.on_generator_consumed(msg)
        elif kind is m.GetObjectStatus:
            self._serve_object_status(identity, msg)
        elif kind is m.RemoveBorrower:
            self.refs.remove_borrower(msg.object_id, msg.worker_id, msg.count)
        elif kind is m.AddBorrower:
            self._on_add_borrower(identity, msg)
        elif kind is m.GetReferenceSummary:
            from .memory_view import reference_summary
            self.reply_to(identity, m.ReferenceSummaryReply(msg.request_id, reference_summary(self)))
        else:
            log.warning("unexpected router message %s", kind.__name__)

    def reply_to(self, identity: bytes, msg) -> None:
        """Send on the router (lock held)."""
        try:
            self.loop.send_routed(self.router, identity, m.encode(msg))
        except zmq.ZMQError as exc:
            log.warning("could not reply %s to %r: %s", type(msg).__name__, identity, exc)

    def track_dependencies(self, task, on_ready) -> None:
        """Count ``task.deps`` as used by a pending task; ``on_ready(task)`` once
        all are ready (lock held).  Borrowed ones are fetched from their owner."""
        refs = self.refs
        for _, entry in task.deps:
            refs.add_task_ref(entry)

        def dep_ready():
            task.unresolved -= 1
            if task.unresolved == 0:
                on_ready(task)

        for object_id, entry in task.deps:
            if not entry.ready:
                task.unresolved += 1
                refs.on_ready(entry, dep_ready)
                if not entry.owned:
                    self._request_object_status(object_id, entry)
        if task.unresolved == 0:
            on_ready(task)

    def set_object_ready(self, object_id: bytes, kind: int, data) -> None:
        for callback in self.refs.set_ready(object_id, kind, data):
            try:
                callback()
            except Exception:
                log.exception("object-ready callback failed")

    # ---------------------------------------------------------------- tick ---
    def _tick(self) -> None:
        self.flush_ref_ops()
        self.tasks.tick()
        self.task_events.flush_due(self, time.monotonic())

    def flush_ref_ops(self) -> None:
        """Apply queued ref-count changes and send store frees (lock held)."""
        refs = self.refs
        if self.generator_streams.dropped:
            self.generator_streams.release_dropped()
        refs.apply_ref_ops()
        if refs.freed_actor_handles:
            for actor_id in refs.take_freed_actor_handles():
                self.actors.handles_gone(actor_id)
        releases = self.refs.take_borrower_releases()
        if releases:
            self.send_borrower_releases(releases)
        raylet = self.raylet
        releases = self._pending_releases
        pins = self.pin_cache
        now = time.monotonic()
        while releases:
            object_id, offset, size = releases.popleft()
            if not pins.keep(object_id, offset, size, now):
                self.loop.send(raylet, m.encode(m.ReleaseObject(object_id)))
        freed = self.refs.take_freed_store_objects()
        if len(pins):
            for object_id in pins.expired(now) + (pins.drop(freed) if freed else []):
                self.loop.send(raylet, m.encode(m.ReleaseObject(object_id)))
        if freed:   # after our own pins on them are released: deleted at once
            self.loop.send(raylet, m.encode(m.FreeObjects(freed)))

    # ------------------------------------------------------------ shutdown ---
    def shutdown(self, linger_ms: int = 0) -> None:
        """Disconnect and close every socket.  ``linger_ms`` > 0 (a worker that
        exits on purpose) first lets queued frames - the replies of its last
        calls, ref-count updates - reach their peers, for at most that long."""
        if self.closed:
            return
        self.closed = True
        try:
            self.loop.acquire()
            try:
                self.task_events.flush_due(self, 0.0, force=True)
                self.tasks.return_idle_leases(force=True)
                self.flush_ref_ops()
                self.loop.send(self.raylet, m.encode(m.DisconnectClient(self.worker_id)))
            finally:
                self.loop.release()
        except Exception:
            log.exception("error while disconnecting")
        self.loop.stop_background()
        self.loop.acquire()
        try:
            for sock in list(self.loop._handlers):
                self.loop.remove_socket(sock)
                sock.close(linger_ms)
            self._peers.clear()
        finally:
            self.loop.lock.release()
        if self._future_executor is not None:
            self._future_executor.shutdown(wait=False)
        self.loop.close()
        if linger_ms:   # returns once those frames are out (or linger_ms passed)
            transport.context().destroy(linger=0)


class GcsError(RuntimeError):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def _decode(frame):
    try:
        return m.decode(frame)
    except m.MalformedMessage as exc:
        log.warning("dropped malformed message: %s", exc)
        return None
