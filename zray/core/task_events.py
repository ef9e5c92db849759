"""Task events: each process notes its tasks' state changes and sends them to
the GCS in batches (Ray's task-event stream), for ``zray.util.state.list_tasks``
and ``zray.timeline()``.

Owners note a task when they submit it; the worker that runs it notes RUNNING
and then FINISHED or FAILED.  A note is one short tuple appended to a list;
the core worker's tick sends the batch every FLUSH_INTERVAL_S with this
process's node, worker id and pid once in its header, so the task path pays
no message of its own (measured: the first version, with a dict per event,
cost async tasks ~20%).  The GCS keeps the last MAX_TASKS_IN_GCS tasks
(zray.gcs.task_events).  RAY_task_events_report_interval_ms=0 turns it off,
as in Ray.

Event tuples (state codes, then fields):
    SUBMITTED  (task_id, "S", time, name, type, job_id, parent_task_id, actor_id)
    RUNNING    (task_id, "R", time, name, type)
    FINISHED   (task_id, "F", time)
    FAILED     (task_id, "X", time, error_type, error_message)
"""
from __future__ import annotations

import os
import time

from ..sockets.messages import GcsMethod

FLUSH_INTERVAL_S = 1.0
MAX_BUFFERED = 100_000      # a GCS that does not take them: older events are dropped
ENABLED = os.environ.get("RAY_task_events_report_interval_ms", "1000") != "0"

NORMAL_TASK, ACTOR_CREATION_TASK, ACTOR_TASK = "NORMAL_TASK", "ACTOR_CREATION_TASK", "ACTOR_TASK"
_TYPES = (NORMAL_TASK, ACTOR_CREATION_TASK, ACTOR_TASK)   # by task_spec kind
_ERROR = 2                                                 # ReturnKind.ERROR
_now = time.time


class TaskEventBuffer:
    __slots__ = ("events", "dropped", "_next_flush")

    def __init__(self):
        self.events: list = []
        self.dropped = 0
        self._next_flush = 0.0

    def submitted(self, task_id: bytes, name: str, task_type: str, job_id: bytes,
                  parent_task_id: bytes, actor_id=None) -> None:
        if ENABLED:
            self.events.append((task_id, "S", _now(), name, task_type, job_id, parent_task_id,
                                actor_id))

    def add(self, event: tuple) -> None:
        if ENABLED:
            self.events.append(event)

    def flush_due(self, cw, now: float, force: bool = False) -> None:
        """Send what is buffered to the GCS (loop lock held)."""
        events = self.events
        if not events or (now < self._next_flush and not force):
            return
        self._next_flush = now + FLUSH_INTERVAL_S
        self.events = []
        if len(events) > MAX_BUFFERED:
            self.dropped += len(events) - MAX_BUFFERED
            events = events[-MAX_BUFFERED:]
        header = (cw.node_id, cw.worker_id, os.getpid())
        cw.gcs_call_async(GcsMethod.ADD_TASK_EVENTS, (header, events), _ignore_reply)


def _ignore_reply(reply) -> None:
    pass


def note_started(cw, spec, actor) -> None:
    """The worker about to run ``spec`` notes RUNNING (with the name it runs as;
    an actor's creation task has no owner's note, so the type comes here too)."""
    if not ENABLED:
        return
    task_type = _TYPES[spec.kind]
    if task_type is ACTOR_TASK:
        name = f"{type(actor).__name__}.{spec.method_name}"
    elif task_type is ACTOR_CREATION_TASK:
        name = f"{spec.function_name}.__init__"
    else:
        name = spec.function_name
    cw.task_events.events.append((spec.task_id, "R", _now(), name, task_type))


def note_ended(cw, spec, returns) -> None:
    """FINISHED, or FAILED with the error's type and message."""
    if not ENABLED:
        return
    for kind, data in returns or ():
        if kind == _ERROR:
            cw.task_events.events.append((spec.task_id, "X", _now()) + _error_info(data))
            return
    cw.task_events.events.append((spec.task_id, "F", _now()))


def note_failed_by_owner(cw, task_id: bytes, returns) -> None:
    """The owner's note of a task that ended in an error it made itself (its
    worker died, it was cancelled before it ran, an argument failed)."""
    if ENABLED and returns and returns[0][0] == _ERROR:
        cw.task_events.events.append((task_id, "X", _now()) + _error_info(returns[0][1]))


def _error_info(blob) -> tuple:
    import pickle
    try:
        err = pickle.loads(blob)
    except Exception:
        return "TASK_EXECUTION_EXCEPTION", ""
    return _error_type(err), str(err)[:2000]


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
