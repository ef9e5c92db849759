"""Task execution inside a worker process.

Normal tasks and calls of a plain actor run on the main thread in arrival
order (per-caller order is the connection's order).  A threaded actor
(max_concurrency > 1) runs calls on a thread pool; an async actor runs them
as coroutines on its own event loop thread.  Replies go back on the router
to the caller that pushed the task.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import mmap
import os
import threading
import traceback
from collections import deque

from .. import exceptions, ids, serialization
from ..sockets import messages as m
from ..sockets.messages import ReturnKind, TaskStatus
from .core_worker import TaskContext, current_task
from .executor_async import ActorExit, AsyncExecution, actor_method
from .actor_lifecycle import ActorLifecycle
from .cancellation import TaskCancellation
from .streaming_exec import StreamingExecution, is_streaming
from .task_events import note_ended, note_started
from .task_spec import (ACTOR_CREATION_TASK, ACTOR_TASK, NORMAL_TASK, ArgSlot, TaskSpec,
                        running_marker_path)

log = logging.getLogger(__name__)

# Plain ints on the wire: an IntEnum member pickles as a constructor call.
INLINE, IN_STORE, ERROR = map(int, (ReturnKind.INLINE, ReturnKind.IN_STORE, ReturnKind.ERROR))
_NONE_BLOB = serialization.serialize_inline(None)[0]
EMPTY_ARGS_BLOB = serialization.EMPTY_ARGS_BLOB
_RETURN_VALUE_OF: dict = {}   # function name -> how serialization errors name its result
_tuple_new = tuple.__new__
_OK, _REQUEUE, _EXITING = int(TaskStatus.OK), int(TaskStatus.REQUEUE), int(TaskStatus.EXITING)
# A worker that exits on purpose waits this long at most for its last frames to leave.
EXIT_FLUSH_MS = 2000


def _return_value_of(function_name: str) -> str:
    what = _RETURN_VALUE_OF.get(function_name)
    if what is None:
        what = _RETURN_VALUE_OF[function_name] = f"the return value of '{function_name}'"
    return what


def _open_running_marker(cw):
    """Shared 16-byte map of this worker's running-task marker (see task_spec)."""
    try:
        fd = os.open(running_marker_path(cw.session_dir, cw.worker_id),
                     os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, 16)
            return mmap.mmap(fd, 16)
        finally:
            os.close(fd)
    except (OSError, ValueError):
        return None


def _set_visible_gpus(gpu_ids: tuple):
    """Point CUDA at the lease's devices (as Ray does); returns the old value."""
    previous = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpu_ids)
    return previous


def _restore_visible_gpus(previous) -> None:
    if previous is None:
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = previous


class Executor(AsyncExecution, StreamingExecution, TaskCancellation, ActorLifecycle):
    def __init__(self, core_worker):
        self.cw = core_worker
        self.queue: deque = deque()          # (identity, TaskSpec) for the main thread
        self.mode = "task"                   # task | actor | threaded | async
        self.actor = None
        self.actor_id = None
        self.running = None                  # TaskSpec on the main thread
        self.exiting = False
        # exit_actor() was called: the actor leaves even if its exception was
        # caught, or raised in a background asyncio task (Ray checks this too).
        self.exit_requested = False
        self.exit_requested_by = None        # the task id of the call that asked, if any
        self.retiring = False                # past max_calls, waiting for its objects' release
        self.exit_code = 0
        self._pool = None
        self._group_pools: dict = {}         # concurrency group -> its thread pool
        self._async_loop = None
        self._async_sem = None
        self._async_tasks: dict = {}         # task_id -> asyncio.Task (event loop thread)
        self._idle_since = None              # async: when the last running call ended
        self._spin_for_next_call = None      # async: set by the event loop
        self._calls: dict = {}               # function_id -> calls run (for max_calls)
        self._outbox: deque = deque()        # (identity, TaskReply) from pool threads
        self._consumed: dict = {}            # generator task id -> items its caller took
        self._consumed_events: dict = {}     # generator task id -> (loop, asyncio.Event), async actors
        self._group_loops: dict = {}         # async: concurrency group -> its event loop
        self._main_thread = threading.get_ident()
        self._init_cancellation()
        self._marker = _open_running_marker(core_worker)

    # ---------------------------------------------------------- intake ---
    def on_push(self, identity: bytes, spec_tuple) -> None:
        """Lock held (any thread)."""
        spec = _tuple_new(TaskSpec, spec_tuple)
        if self.retiring and spec.kind == NORMAL_TASK:
            return   # its owner resends it elsewhere when told the lease ended
        if spec.owner_id not in self.cw._live_owners:
            self.cw.note_caller_alive(spec.owner_id)
        if spec.kind == ACTOR_TASK:
            if self.mode == "threaded":
                pool = self._pool
                if spec.options and "concurrency_group" in spec.options:
                    # (an unknown group - the caller checks - runs in the default pool)
                    pool = self._group_pools.get(spec.options["concurrency_group"], pool)
                pool.submit(self.execute, identity, spec)
                return
            if self.mode == "async":
                loop = self._async_loop
                if spec.options and "concurrency_group" in spec.options:
                    loop = self._group_loops.get(spec.options["concurrency_group"], loop)
                if loop is self._async_loop and threading.get_ident() == self._main_thread:
                    self._start_async(identity, spec, loop)
                else:
                    loop.call_soon_threadsafe(self._start_async, identity, spec, loop)
                return
        self.queue.append((identity, spec))

    def on_main_thread(self) -> bool:
        return threading.get_ident() == self._main_thread

    def holds_task_resources(self) -> bool:
        running = self.running
        return running is not None and running.kind == NORMAL_TASK

    def requeue_unstarted(self) -> None:
        """The running task blocked: hand queued normal tasks back (lock held)."""
        keep = deque()
        for identity, spec in self.queue:
            if spec.kind == NORMAL_TASK:
                self.cw.reply_to(identity, m.TaskReply(spec.task_id, _REQUEUE, [],
                                                       self.cw.worker_id))
            else:
                keep.append((identity, spec))
        self.queue = keep

    # ------------------------------------------------------------ running ---
    def run_forever(self) -> int:
        loop = self.cw.loop
        while not self.exiting:
            if self.mode == "async":
                self._run_event_loop()
                break
            if self._outbox:
                self._flush_outbox()
            if not self.queue:
                # Threaded actors' pool threads need the leader often: only a
                # single-threaded worker waits on its ROUTER alone.
                loop.wait_until(lambda: self.queue or self.exiting or self._outbox, 1.0,
                                idle=self.mode != "threaded")
                continue
            identity, spec = self.queue.popleft()
            self.execute(identity, spec)
        return self.exit_code

    def execute(self, identity: bytes, spec: TaskSpec) -> None:
        on_main = threading.get_ident() == self._main_thread
        if on_main:
            self.running = spec
            self.cancel_requested = None
            self.cancelled = None
            if spec.kind == NORMAL_TASK and self._marker is not None:
                self._marker[:16] = spec.task_id
        options = spec.options
        ctx = TaskContext(spec.task_id, spec.function_name, spec.actor_id, received=[],
                          resources=options.get("resources") if options else None, caller=identity)
        gpu_ids = options.get("gpu_ids") if options and spec.kind == NORMAL_TASK else None
        if options and spec.kind == NORMAL_TASK:
            ctx.placement_group = options.get("placement_group")
        visible = None
        if gpu_ids:   # the lease's devices, for this task only (an actor's are set at creation)
            ctx.gpu_ids = tuple(gpu_ids)
            visible = _set_visible_gpus(ctx.gpu_ids)
        token = current_task.set(ctx)
        note_started(self.cw, spec, self.actor)
        try:
            returns, exiting = self._invoke(spec)   # its locals (args, result) are gone after
            if self.exit_requested and not exiting and self.exit_requested_by == spec.task_id:
                returns, exiting = self.exit_after_caught_exit(spec)
        finally:
            current_task.reset(token)
            if on_main:
                self.running = None
            if gpu_ids:
                _restore_visible_gpus(visible)
        note_ended(self.cw, spec, returns)
        borrowed = self.cw.still_held_after_task(ctx, spec) if ctx.received else ()
        # An __init__ that called exit_actor(): the GCS lets the worker leave by itself.
        status = _EXITING if exiting and spec.kind == ACTOR_CREATION_TASK else _OK
        self._reply(identity, spec, returns, borrowed, ctx.returned_refs, status)
        if spec.kind == NORMAL_TASK and spec.options and self._reached_max_calls(spec):
            # max_calls: this worker retires (Ray frees leaked state this way),
            # at once unless objects it owns are still in use (their owner must
            # live on, as in Ray: then it leaves once they are released).
            if self._owns_objects_in_use():
                self._retire()
            else:
                exiting = True
        if exiting:
            self.exit_now(0)

    def _invoke(self, spec: TaskSpec) -> tuple:
        """(returns, exiting) of running one task or actor call."""
        try:
            if spec.kind == ACTOR_TASK:
                method = actor_method(self.actor, spec.method_name)
                args, kwargs = self._args(spec)
                result = method(*args, **kwargs)
            elif spec.kind == NORMAL_TASK:
                function = self.cw.functions.load(spec.function_id)
                args, kwargs = self._args(spec)
                if threading.get_ident() == self._main_thread:
                    return self._run_interruptible(self._run_task, spec, function, args, kwargs)
                result = function(*args, **kwargs)
            else:
                result = self._create_actor(spec)
            if spec.options is not None and is_streaming(spec):
                return self._stream(spec, result), False
            return self._pack_returns(spec, result), False
        except KeyboardInterrupt as exc:
            if self.cancelled == spec.task_id:   # Ray's cancel: RayTaskError(TaskCancelledError)
                return self._returns_for_exception(spec, exceptions.TaskCancelledError(
                    spec.task_id.hex()))
            return self._returns_for_exception(spec, exc)
        except (ActorExit, Exception) as exc:
            return self._returns_for_exception(spec, exc)
        except SystemExit as exc:
            # The user's sys.exit() (not exit_actor()) ends the process, as in
            # Ray: a crash, so the actor restarts.  In a pool thread the
            # exception would only end the thread (the call would never reply).
            if threading.get_ident() == self._main_thread:
                raise
            log.warning("sys.exit(%r) in %s: the worker exits", exc.code, spec.function_name)
            os._exit(exc.code if isinstance(exc.code, int) else 1)

    def _run_task(self, spec, function, args, kwargs) -> tuple:
        result = function(*args, **kwargs)
        if spec.options is not None and is_streaming(spec):
            return self._stream(spec, result), False
        return self._pack_returns(spec, result), False

    def _returns_for_exception(self, spec, exc) -> tuple:
        """(returns, exiting) for the exception that ended a call (inside except)."""
        if isinstance(exc, (ActorExit, exceptions.AsyncioActorExit)):
            return self._error_returns(spec, exceptions.ActorDiedError(
                error_msg=exceptions.INTENDED_EXIT_MESSAGE)), True
        if isinstance(exc, (exceptions.TaskCancelledError, asyncio.CancelledError)):
            # Cancelled while running: Ray's RayTaskError(TaskCancelledError), both types.
            return self._error_returns(spec, self._task_error(
                spec, exceptions.TaskCancelledError(spec.task_id.hex()))), False
        return self._error_returns(spec, self._task_error(spec, exc)), False

    def _owns_objects_in_use(self) -> bool:
        cw = self.cw
        cw.loop.acquire()
        try:
            cw.refs.apply_ref_ops()
            return any(entry.owned for entry in cw.refs.objects.values())
        finally:
            cw.loop.release()

    def _retire(self) -> None:
        """Run no more tasks (queued ones are resent elsewhere by their owner,
        as after a worker's death, once the raylet has ended the lease)."""
        self.retiring = True
        cw = self.cw
        cw.loop.acquire()
        try:
            self.queue = deque(item for item in self.queue if item[1].kind != NORMAL_TASK)
            cw.loop.send(cw.raylet, m.encode(m.RetireWorker()))
        finally:
            cw.loop.release()

    def _reached_max_calls(self, spec) -> bool:
        max_calls = spec.options.get("max_calls")
        if not max_calls:
            return False
        count = self._calls.get(spec.function_id, 0) + 1
        self._calls[spec.function_id] = count
        return count >= max_calls

    def exit_now(self, code: int) -> None:
        self.exiting = True
        self.exit_code = code
        if self.mode == "async" and threading.get_ident() == self._main_thread:
            self._async_loop.stop()
            return
        if threading.get_ident() != self._main_thread:
            # A pool thread: the replies other threads queued go first.
            self._flush_outbox()
            if code == 0:
                self.run_exit_hooks()
            self.cw.shutdown(linger_ms=EXIT_FLUSH_MS)
            os._exit(process_exit_code(code))

    def _reply(self, identity, spec, returns, borrowed=(), returned_refs=(), status=_OK) -> None:
        cw = self.cw
        reply = m.TaskReply(spec.task_id, status, returns, cw.worker_id, borrowed, returned_refs)
        if (self.mode == "threaded" and threading.get_ident() != self._main_thread
                and not returned_refs):
            # Pool threads hand replies to the main thread, which sends them in
            # batches, instead of each taking the lock from the polling leader.
            # (A reply handing over refs goes now: a release of ours must not overtake it.)
            outbox = self._outbox
            outbox.append((identity, reply))
            if len(outbox) == 1:
                # Only the first reply of a batch wakes the main thread (a pipe
                # write each was 15% of a busy threaded actor); while len > 1
                # the main thread has not drained past the earlier one yet.
                cw.loop.wake_leader()
            return
        cw.loop.acquire()
        try:
            cw.reply_to(identity, reply)
            if self.mode == "async" and threading.get_ident() == self._main_thread:
                # A send can consume the ZMQ_FD edge the loop's readers wait on:
                # poll_once checks the sockets sent on.
                cw.loop.poll_once(0)
        finally:
            cw.loop.release()
        if not self.queue and len(self._async_tasks) <= 1:
            # The reply waits for this process's zmq IO thread, which may be
            # queued behind us on this CPU; with nothing else to run, let it
            # go first (measured: sync calls ~+5%, see io_loop's spin).
            os.sched_yield()

    def _flush_outbox(self) -> None:
        cw = self.cw
        outbox = self._outbox
        cw.loop.acquire()
        try:
            while outbox:
                identity, msg = outbox.popleft()
                cw.reply_to(identity, msg)
        finally:
            cw.loop.release()

    def _reply_error(self, identity, spec, err) -> None:
        self.cw.reply_to(identity, m.TaskReply(spec.task_id, _OK,
                                               self._error_returns(spec, err), self.cw.worker_id))

    # ---------------------------------------------------------- arguments ---
    def _args(self, spec: TaskSpec):
        if spec.args_blob == EMPTY_ARGS_BLOB:
            return (), {}
        args, kwargs = serialization.deserialize(spec.args_blob)
        if spec.resolved is None:
            return args, kwargs or {}
        values = [self._resolve(slot) for slot in spec.resolved]
        args = [values[a.index] if type(a) is ArgSlot else a for a in args]
        if kwargs:
            kwargs = {k: values[v.index] if type(v) is ArgSlot else v for k, v in kwargs.items()}
        return args, kwargs or {}

    def _resolve(self, slot):
        kind, data = slot
        if kind == INLINE:
            return serialization.deserialize(data)
        if kind == IN_STORE:
            return self.cw._get_from_store(data)
        from .object_api import error_from_blob
        raise error_from_blob(data)

    # ------------------------------------------------------------ returns ---
    def _pack_returns(self, spec: TaskSpec, result) -> list:
        n = spec.num_returns
        if n == 1:
            values = (result,)
        elif n == 0:
            return []
        else:
            values = tuple(result) if not isinstance(result, tuple) else result
            if len(values) != n:
                raise ValueError(f"Task '{spec.function_name}' declared num_returns={n} but "
                                 f"returned {len(values)} values")
        returned_refs: list = []
        returns = [self._pack_value(spec, index, index, value, returned_refs)
                   for index, value in enumerate(values)]
        if returned_refs:   # while `values` still holds them (ownership.py, rule 2)
            current_task.get().returned_refs = self.cw.hand_over_returned_refs(spec, returned_refs)
        return returns

    def _pack_value(self, spec: TaskSpec, object_index: int, ref_index: int, value,
                    returned_refs: list) -> tuple:
        """(kind, data) of one returned value, stored as return ``object_index``
        if large; refs inside it are noted under ``ref_index``."""
        if value is None:
            return (INLINE, _NONE_BLOB)
        inline, stream, buffers, contained = serialization.serialize(
            value, _return_value_of(spec.function_name))
        if contained:
            returned_refs.extend((ref_index, ref) for ref in contained)
        if inline is not None:
            return (INLINE, inline)
        object_id = ids.object_id_for_return(spec.task_id, object_index)
        size = self.cw.write_to_store(object_id, stream, buffers)
        return (IN_STORE, (self.cw.node_id, size))

    def _task_error(self, spec, exc):
        tb = traceback.format_exc()
        if isinstance(exc, exceptions.TaskCancelledError):
            # As Ray's: the interrupt's traceback, then the cancellation itself.
            tb = (f"{tb.rstrip()}\n\nDuring handling of the above exception, another exception "
                  f"occurred:\n\nzray.exceptions.TaskCancelledError: {exc}\n")
        actor_repr = repr(self.actor) if self.actor is not None and spec.kind == ACTOR_TASK else None
        name = spec.function_name if spec.kind != ACTOR_TASK else (
            f"{type(self.actor).__name__}.{spec.method_name}")
        if isinstance(exc, exceptions.RayTaskError):
            # A nested task's error re-raised here: keep the user's exception as the
            # cause (not nested RayTaskErrors), as Ray does; tb already shows both.
            exc = exc.cause
        return exceptions.RayTaskError(name, tb, exc, pid=os.getpid(), actor_repr=actor_repr,
                                       actor_id=self.actor_id.hex() if self.actor_id else None)

    def _error_returns(self, spec, err) -> list:
        try:
            blob = serialization.serialize_inline(err)[0]
        except Exception as problem:
            if isinstance(err, exceptions.RayTaskError):
                err = exceptions.RayTaskError(
                    err.function_name, err.traceback_str,
                    exceptions.unserializable_cause(err.cause, problem, err.traceback_str),
                    pid=err.pid)
            else:
                err = exceptions.RaySystemError(repr(err))
            blob = serialization.serialize_inline(err)[0]
        return [(ERROR, blob)] * max(1, spec.num_returns)

    # -------------------------------------------------------------- actors ---
    def _create_actor(self, spec: TaskSpec):
        cls = self.cw.functions.load(spec.function_id)
        args, kwargs = self._args(spec)
        options = spec.options or {}
        self.actor_id = spec.actor_id
        self.cw.actor_id = spec.actor_id
        self.cw.default_job_id = spec.job_id
        self.cw.actor_resources = options.get("resources") or {}
        self.cw.actor_gpu_ids = tuple(options.get("gpu_ids") or ())
        self.cw.actor_placement_group = options.get("placement_group")
        self.cw.actor_name = options.get("name")
        self.cw.actor_class_name = spec.function_name
        self.cw.actor_restarts = options.get("num_restarts", 0)
        if self.cw.actor_gpu_ids:    # for the actor's whole life, before its __init__ runs
            _set_visible_gpus(self.cw.actor_gpu_ids)
        is_async = options.get("is_async", False)
        max_concurrency = options.get("max_concurrency") or (1000 if is_async else 1)
        groups = options.get("concurrency_groups") or {}
        if is_async:
            # As in Ray, __init__ already sees the actor's event loop: tasks it
            # starts there (loop.create_task) run once the loop does.
            self._start_event_loop(max_concurrency, groups)
            asyncio.set_event_loop(self._async_loop)
            # Inside the running loop, so __init__ can asyncio.create_task() too.
            self.actor = self._async_loop.run_until_complete(_construct(cls, args, kwargs))
        else:
            self.actor = cls(*args, **kwargs)
        if is_async:
            self.mode = "async"
        elif max_concurrency > 1 or groups:
            # Each concurrency group runs its calls on threads of its own (Ray's).
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=max_concurrency, thread_name_prefix="zray-actor")
            self._group_pools = {name: concurrent.futures.ThreadPoolExecutor(
                max_workers=limit, thread_name_prefix=f"zray-actor-{name}")
                for name, limit in groups.items()}
            self.mode = "threaded"
        else:
            self.mode = "actor"
        return None


def process_exit_code(code: int) -> int:
    """The process's exit code for the executor's: 0 (leaving on purpose)
    becomes INTENDED_EXIT_CODE, which the raylet reads as an intended exit."""
    return m.INTENDED_EXIT_CODE if code == 0 else code


async def _construct(cls, args, kwargs):
    return cls(*args, **kwargs)
