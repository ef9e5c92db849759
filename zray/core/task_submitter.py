"""Normal-task submission: dependency resolution, leases, pipelined pushes.

Per scheduling key (the resource shape) the owner keeps a FIFO of ready
tasks and the worker leases it holds.  Tasks go straight to leased workers
(DEALER -> worker ROUTER), several in flight per lease when tasks are short
(measured), one at a time when they are long so work spreads evenly.  A
lease idle for IDLE_LEASE_S, or asked back by the raylet, is returned.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from collections import deque

import zmq

from .. import exceptions, serialization
from .object_api import dependency_error_blob
from .task_events import note_failed_by_owner
from .task_spec import read_running_marker
from ..runtime_env import ENV_KEY
from ..sockets import messages as m
from ..sockets.messages import ReturnKind, TaskStatus

log = logging.getLogger(__name__)

# Plain ints on the wire: an IntEnum member pickles as a constructor call.
INLINE, IN_STORE, ERROR = map(int, (ReturnKind.INLINE, ReturnKind.IN_STORE, ReturnKind.ERROR))
IDLE_LEASE_S = 0.2
MAX_LEASE_REQUESTS = 4
SHORT_TASK_S = 0.002
PIPELINE_DEPTH = 16


# Ray's task_retry_delay_ms (1 s measured on Ray 2.60): the pause before a task
# whose exception is retried (retry_exceptions) runs again.
RETRY_DELAY_S = int(os.environ.get("RAY_task_retry_delay_ms", "1000")) / 1000.0


class PendingTask:
    __slots__ = ("spec", "return_ids", "deps", "unresolved", "retries_left", "retry_exceptions",
                 "key", "cancelled", "sent_at", "depth_at_send", "force_cancelled", "nested")

    def __init__(self, spec, return_ids, deps, retries_left, retry_exceptions, key, nested=()):
        self.spec = spec
        self.return_ids = return_ids
        self.deps = deps                    # [(object_id, entry)]
        self.nested = nested                # owned object ids nested inside the arguments
        self.unresolved = 0
        self.retries_left = retries_left
        self.retry_exceptions = retry_exceptions
        self.key = key
        self.cancelled = False
        self.force_cancelled = False
        self.sent_at = 0.0
        self.depth_at_send = 1


class Lease:
    __slots__ = ("lease_id", "worker_id", "endpoint", "sock", "in_flight", "queue", "idle_since",
                 "blocked", "exclusive", "gpu_ids")

    def __init__(self, lease_id, worker_id, endpoint, sock, queue, gpu_ids=()):
        self.lease_id = lease_id
        self.gpu_ids = gpu_ids          # GPU devices the raylet gave this lease
        self.worker_id = worker_id
        self.endpoint = endpoint
        self.sock = sock
        self.in_flight: dict = {}
        self.queue = queue
        self.idle_since = time.monotonic()
        self.blocked = False
        self.exclusive = False          # runs a task with no retries left: nothing else


class KeyQueue:
    __slots__ = ("resources", "env", "tasks", "leases", "requests", "task_time", "warned")

    def __init__(self, key: tuple):
        # A scheduling key: (resource, amount) pairs, plus the runtime env if any.
        self.resources = {name: amount for name, amount in key if name != ENV_KEY}
        self.env = next((env for name, env in key if name == ENV_KEY), ())
        self.tasks: deque = deque()
        self.leases: list = []
        self.requests: set = set()
        self.task_time = 1.0                # EWMA seconds per task; starts "long"
        self.warned = False


def resolve_args(deps) -> tuple:
    """(resolved slots, error blob or None) for deps that are all ready."""
    resolved = []
    for object_id, entry in deps:
        kind = entry.kind
        if kind == INLINE:
            resolved.append((INLINE, entry.data))
        elif kind == IN_STORE:
            resolved.append((IN_STORE, object_id))
        else:
            return None, entry.data
    return resolved, None


class TaskSubmitter:
    def __init__(self, core_worker):
        self.cw = core_worker
        self.queues: dict = {}
        self.leases: dict = {}
        self.in_flight: dict = {}           # task_id -> Lease
        self.lease_requests: dict = {}      # request_id -> KeyQueue
        self.tasks: dict = {}               # task_id -> PendingTask (until finished)
        self.retry_later: list = []         # (monotonic due time, PendingTask) to retry

    # ------------------------------------------------------------ submit ---
    def submit(self, task: PendingTask) -> None:
        """Called with the core worker lock held."""
        self.tasks[task.spec.task_id] = task
        if not task.deps:
            self._enqueue(task)
            return
        self.cw.track_dependencies(task, self._on_deps_ready)

    def _on_deps_ready(self, task: PendingTask) -> None:
        if task.cancelled:
            return
        resolved, error = resolve_args(task.deps)
        if error is not None:
            error = dependency_error_blob(error, task.spec)
            self._finish(task, [(ERROR, error)] * len(task.return_ids))
            return
        task.spec = task.spec._replace(resolved=resolved)
        self._enqueue(task)

    def _enqueue(self, task: PendingTask) -> None:
        options = task.spec.options
        if options and "unschedulable" in options:   # e.g. hard affinity to a dead node
            error = exceptions.TaskUnschedulableError(options["unschedulable"])
            blob = serialization.serialize_inline(error)[0]
            self._finish(task, [(ERROR, blob)] * len(task.return_ids))
            return
        kq = self.queues.get(task.key)
        if kq is None:
            kq = self.queues[task.key] = KeyQueue(task.key)
        kq.tasks.append(task)
        self._dispatch(kq)

    def _dispatch(self, kq: KeyQueue) -> None:
        tasks = kq.tasks
        if tasks:
            depth = PIPELINE_DEPTH if kq.task_time < SHORT_TASK_S else 1
            now = time.monotonic()
            while tasks:
                # A task with no retries left runs alone on its worker: the replies
                # of tasks finished just before a crash can be lost with the
                # process, which must not make such a task fail or run twice.
                alone = tasks[0].retries_left == 0
                limit = 1 if alone else depth
                best = None
                for lease in kq.leases:
                    n = len(lease.in_flight)
                    if n < limit and not lease.blocked and not lease.exclusive and (
                            best is None or n < len(best.in_flight)):
                        best = lease
                if best is None:
                    break
                task = tasks.popleft()
                if task.cancelled:
                    continue
                best.exclusive = alone
                task_id = task.spec.task_id
                best.in_flight[task_id] = task
                self.in_flight[task_id] = best
                task.sent_at = now
                task.depth_at_send = len(best.in_flight)
                spec = task.spec
                if best.gpu_ids:   # the worker sets CUDA_VISIBLE_DEVICES from these
                    spec = spec._replace(options=dict(spec.options or (), gpu_ids=best.gpu_ids))
                self.cw.loop.send(best.sock, m.encode(m.PushTask(tuple(spec))))
            if tasks and len(kq.requests) < min(MAX_LEASE_REQUESTS, len(tasks)):
                rid = next(self.cw._request_ids)
                self.lease_requests[rid] = kq
                kq.requests.add(rid)
                self.cw.loop.send(self.cw.raylet, m.encode(m.RequestWorkerLease(rid, kq.resources, None,
                                                                  self.cw.job_id, kq.env)))

    # ------------------------------------------------------------- leases ---
    def on_lease_reply(self, msg) -> None:
        kq = self.lease_requests.get(msg.request_id)
        if kq is None:
            if type(msg) is m.LeaseGranted:   # cancelled meanwhile: give it back
                self.cw.loop.send(self.cw.raylet, m.encode(m.ReturnWorker(msg.lease_id, False)))
            return
        if type(msg) is m.LeaseInfeasible:
            if not kq.warned:
                kq.warned = True
                # Printed once (Ray's behaviour); log.warning as well would print it a
                # second time through logging's last-resort handler.
                warning = f"zray warning: {msg.message}"
                log.debug(warning)
                print(warning, file=sys.stderr)
            return
        del self.lease_requests[msg.request_id]
        kq.requests.discard(msg.request_id)
        if type(msg) is m.LeaseFailed:
            error = exceptions.TaskUnschedulableError(msg.message)
            blob = serialization.serialize_inline(error)[0]
            while kq.tasks:
                task = kq.tasks.popleft()
                self._finish(task, [(ERROR, blob)] * len(task.return_ids))
            return
        lease = Lease(msg.lease_id, msg.worker_id, msg.worker_endpoint,
                      self.cw.peer(msg.worker_endpoint), kq, tuple(msg.gpu_ids))
        self.leases[msg.lease_id] = lease
        kq.leases.append(lease)
        if kq.tasks:
            self._dispatch(kq)
        else:
            self._return_lease(lease)

    def _return_lease(self, lease: Lease, disconnect: bool = False) -> None:
        self.leases.pop(lease.lease_id, None)
        if lease in lease.queue.leases:
            lease.queue.leases.remove(lease)
        self.cw.loop.send(self.cw.raylet, m.encode(m.ReturnWorker(lease.lease_id, disconnect)))

    def return_idle_leases(self, force: bool = False) -> None:
        now = time.monotonic()
        for lease in list(self.leases.values()):
            if not lease.in_flight and not lease.queue.tasks and (
                    force or now - lease.idle_since > IDLE_LEASE_S):
                self._return_lease(lease)

    def tick(self) -> None:
        self.return_idle_leases()
        if self.retry_later:
            self._requeue_due_retries(time.monotonic())
        for rid, kq in list(self.lease_requests.items()):
            if not kq.tasks:
                del self.lease_requests[rid]
                kq.requests.discard(rid)
                self.cw.loop.send(self.cw.raylet, m.encode(m.CancelLeaseRequest(rid)))

    def _requeue_due_retries(self, now: float) -> None:
        due = [task for when, task in self.retry_later if when <= now]
        if not due:
            return
        self.retry_later = [(when, task) for when, task in self.retry_later if when > now]
        for task in due:
            if not task.cancelled:     # a cancel while it waited has finished it
                self._enqueue(task)

    def on_worker_died(self, msg) -> None:
        lease = self.leases.pop(msg.lease_id, None)
        if lease is None:
            return
        if lease in lease.queue.leases:
            lease.queue.leases.remove(lease)
        # Replies the worker sent before dying may still be queued on its socket.
        while lease.in_flight:
            try:
                frame = lease.sock.recv(zmq.NOBLOCK)
            except zmq.ZMQError:
                break
            self.cw._on_peer(frame)
        if not msg.alive:   # a retired worker still answers for the objects it owns
            self.cw.close_peer(lease.endpoint)
        # Pushed tasks run in push order.  The worker's running-task marker says
        # which one it was running: those before it ran too (their replies were
        # lost in the crash), those after it never started and go back to the
        # queue without using a retry.  Without a marker: the oldest was running.
        in_flight = list(lease.in_flight.items())
        running = read_running_marker(self.cw.session_dir, lease.worker_id)
        if running is None:
            started = 1
        else:
            started = next((i + 1 for i, (tid, _) in enumerate(in_flight) if tid == running), 0)
        requeue = []
        for position, (task_id, task) in enumerate(in_flight):
            if msg.alive and position < started:
                # A retired worker ran it and replied before retiring; the reply
                # comes on the worker's own connection, which may lag the
                # raylet's message: keep waiting for it.
                continue
            self.in_flight.pop(task_id, None)
            lease.in_flight.pop(task_id, None)
            if task.cancelled:
                err = exceptions.TaskCancelledError(task_id.hex())
            elif position >= started:
                requeue.append(task)
                continue
            elif task.retries_left != 0:
                task.retries_left -= 1
                requeue.append(task)
                continue
            else:
                err = exceptions.WorkerCrashedError(msg.message)
            blob = serialization.serialize_inline(err)[0]
            self._finish(task, [(ERROR, blob)] * len(task.return_ids))
        lease.queue.tasks.extendleft(reversed(requeue))
        self._dispatch(lease.queue)

    # ------------------------------------------------------------ replies ---
    def on_task_reply(self, msg) -> bool:
        lease = self.in_flight.pop(msg.task_id, None)
        if lease is None:
            return False
        task = lease.in_flight.pop(msg.task_id)
        kq = lease.queue
        now = time.monotonic()
        if msg.status == TaskStatus.REQUEUE:
            lease.blocked = True
            kq.tasks.appendleft(task)
        else:
            elapsed = (now - task.sent_at) / task.depth_at_send
            kq.task_time = 0.7 * kq.task_time + 0.3 * elapsed
            if not (task.retry_exceptions and task.retries_left != 0
                    and self._should_retry(task, msg.returns)):
                if msg.borrowed or msg.contained:   # before the task's own references go
                    self.cw.accept_reply_refs(msg, task.return_ids)
                self._finish(task, msg.returns, ran=True)
            else:
                task.retries_left -= 1
                # As Ray (task_retry_delay_ms): an exception retried at once
                # would likely meet the same state again.
                self.retry_later.append((now + RETRY_DELAY_S, task))
        if not lease.in_flight:
            lease.blocked = False
            lease.exclusive = False
            lease.idle_since = now
        self._dispatch(kq)
        return True

    @staticmethod
    def _should_retry(task, returns) -> bool:
        for kind, data in returns:
            if kind == ERROR:
                allowed = task.retry_exceptions
                if allowed is True:
                    return True
                try:
                    err = serialization.deserialize(data)
                except Exception:
                    return False
                cause = getattr(err, "cause", err)
                return isinstance(cause, tuple(allowed))
        return False

    def _finish(self, task: PendingTask, returns, ran: bool = False) -> None:
        self.tasks.pop(task.spec.task_id, None)
        cw = self.cw
        if not ran:       # the worker that ran a task notes its end itself
            note_failed_by_owner(cw, task.spec.task_id, returns)
        for object_id, (kind, data) in zip(task.return_ids, returns):
            cw.set_object_ready(object_id, kind, data)
        for object_id, _ in task.deps:
            cw.refs.remove_task_ref(object_id)
        for object_id in task.nested:
            cw.refs.remove_task_ref(object_id)

    # ------------------------------------------------------------- cancel ---
    def cancel(self, task_id: bytes, force: bool, recursive: bool) -> bool:
        task = self.tasks.get(task_id)
        if task is None:
            return False
        task.cancelled = True
        lease = self.in_flight.get(task_id)
        if lease is None:
            try:
                self.queues[task.key].tasks.remove(task)
            except (KeyError, ValueError):
                pass
            blob = serialization.serialize_inline(exceptions.TaskCancelledError(task_id.hex()))[0]
            self._finish(task, [(ERROR, blob)] * len(task.return_ids))
            return True
        self.cw.loop.send(lease.sock, m.encode(m.CancelTask(task_id, force, recursive)))
        return True
