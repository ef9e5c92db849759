"""Task events: each process notes its tasks' state changes and sends them to
the GCS in batches (Ray's task-event stream), for ``zray.util.state.list_tasks``
and ``zray.timeline()``.

Owners note a task when they submit it; the worker that runs it notes RUNNING
and then FINISHED or FAILED.  Noting is a list append under the caller's lock
or GIL; the core worker's tick sends the batch every FLUSH_INTERVAL_S, so the
task path pays no message of its own.  The GCS keeps the last
MAX_TASKS_IN_GCS tasks (zray.gcs.task_events)."""
from __future__ import annotations

import os
import time

from ..sockets.messages import GcsMethod

FLUSH_INTERVAL_S = 1.0
MAX_BUFFERED = 100_000      # a GCS that does not take them: older events are dropped


class TaskEventBuffer:
    __slots__ = ("events", "dropped", "_next_flush")

    def __init__(self):
        self.events: list = []        # (task_id, state, unix time, info dict or None)
        self.dropped = 0
        self._next_flush = 0.0

    def note(self, task_id: bytes, state: str, info=None) -> None:
        events = self.events
        events.append((task_id, state, time.time(), info))
        if len(events) > MAX_BUFFERED:
            del events[:len(events) - MAX_BUFFERED]
            self.dropped += 1

    def flush_due(self, cw, now: float, force: bool = False) -> None:
        """Send what is buffered to the GCS (loop lock held)."""
        if not self.events or (now < self._next_flush and not force):
            return
        self._next_flush = now + FLUSH_INTERVAL_S
        events, self.events = self.events, []
        cw.gcs_call_async(GcsMethod.ADD_TASK_EVENTS, (events,), _ignore_reply)


def _ignore_reply(reply) -> None:
    pass


_TYPES = {0: "NORMAL_TASK", 1: "ACTOR_CREATION_TASK", 2: "ACTOR_TASK"}   # task_spec kinds
_ERROR = 2                                                                # ReturnKind.ERROR


def note_started(cw, spec, actor) -> None:
    """The worker about to run ``spec`` notes RUNNING with where it runs."""
    kind = _TYPES.get(spec.kind, "NORMAL_TASK")
    if kind == "ACTOR_TASK":
        name = f"{type(actor).__name__}.{spec.method_name}"
    elif kind == "ACTOR_CREATION_TASK":
        name = f"{spec.function_name}.__init__"
    else:
        name = spec.function_name
    cw.task_events.note(spec.task_id, "RUNNING", {
        "name": name, "func_or_class_name": name, "type": kind, "job_id": spec.job_id,
        "actor_id": spec.actor_id, "parent_task_id": spec.parent_task_id,
        "node_id": cw.node_id, "worker_id": cw.worker_id, "worker_pid": os.getpid()})


def note_ended(cw, spec, returns) -> None:
    """FINISHED, or FAILED with the error's type and message."""
    for kind, data in returns or ():
        if kind == _ERROR:
            cw.task_events.note(spec.task_id, "FAILED", _error_info(data))
            return
    cw.task_events.note(spec.task_id, "FINISHED")


def _error_info(blob) -> dict:
    import pickle
    try:
        err = pickle.loads(blob)
    except Exception:
        return {"error_type": "TASK_EXECUTION_EXCEPTION", "error_message": ""}
    return {"error_type": _error_type(err), "error_message": str(err)[:2000]}


def _error_type(err) -> str:
    """Ray's ErrorType names for the common failures."""
    from .. import exceptions
    cause = getattr(err, "cause", None) if isinstance(err, exceptions.RayTaskError) else err
    for cls, name in ((exceptions.TaskCancelledError, "TASK_CANCELLED"),
                      (exceptions.WorkerCrashedError, "WORKER_DIED"),
                      (exceptions.RayActorError, "ACTOR_DIED"),
                      (exceptions.OwnerDiedError, "OWNER_DIED"),
                      (exceptions.ObjectLostError, "OBJECT_UNRECONSTRUCTABLE")):
        if isinstance(cause, cls):
            return name
    return "TASK_EXECUTION_EXCEPTION"


def note_failed_by_owner(cw, task_id: bytes, returns) -> None:
    """The owner's note of a task that ended in an error it made itself (its
    worker died, it was cancelled before it ran, an argument failed)."""
    if returns and returns[0][0] == _ERROR:
        cw.task_events.note(task_id, "FAILED", _error_info(returns[0][1]))
