"""The GCS's record of tasks, merged from the task-event batches processes
send (zray.core.task_events): one row per task with its latest state, its
times and its state history, for ``list_tasks`` and ``timeline``.  In
memory and bounded (the oldest tasks go first), as Ray's GCS task manager.
A row is a list indexed by the constants below: merging is the hot part
(three events a task, from several processes at once)."""
from __future__ import annotations

from collections import OrderedDict

MAX_TASKS_IN_GCS = 100_000
STATES = {"S": "PENDING_NODE_ASSIGNMENT", "R": "RUNNING", "F": "FINISHED", "X": "FAILED"}
_SUBMITTED_ACTOR_CALL = "SUBMITTED_TO_WORKER"
(STATE, LATEST, CREATED, STARTED, ENDED, NAME, TYPE, JOB, PARENT, ACTOR, NODE, WORKER, PID,
 ERROR_TYPE, ERROR_MESSAGE, EVENTS) = range(16)


def _new_row() -> list:
    row = [None] * 16
    row[LATEST] = 0.0
    row[EVENTS] = []
    return row


class TaskEventStore:
    def __init__(self, max_tasks: int = MAX_TASKS_IN_GCS):
        self._rows: OrderedDict = OrderedDict()     # task_id -> row
        self._max = max_tasks
        self.evicted = 0

    def add(self, header, events) -> None:
        """Merge one process's batch; a malformed batch raises ValueError
        (the request fails, naming the problem)."""
        try:
            node_id, worker_id, pid = header
            rows = self._rows
            for event in events:
                task_id, code, when = event[0], event[1], event[2]
                row = rows.get(task_id)
                if row is None:
                    row = rows[task_id] = _new_row()
                    if len(rows) > self._max:
                        rows.popitem(last=False)
                        self.evicted += 1
                state = STATES[code]
                if code == "S":
                    row[NAME] = row[NAME] or event[3]
                    row[TYPE] = row[TYPE] or event[4]
                    row[JOB], row[PARENT], row[ACTOR] = event[5], event[6], event[7]
                    if event[4] == "ACTOR_TASK":
                        state = _SUBMITTED_ACTOR_CALL
                elif code == "R":
                    row[NAME], row[TYPE] = event[3], event[4]
                    row[NODE], row[WORKER], row[PID] = node_id, worker_id, pid
                    row[STARTED] = when
                    if row[ENDED] is not None and row[ENDED] < when:
                        row[ENDED] = None              # a retry: running again
                else:
                    row[ENDED] = when if row[ENDED] is None else max(row[ENDED], when)
                    if code == "X":
                        row[ERROR_TYPE], row[ERROR_MESSAGE] = event[3], event[4]
                row[EVENTS].append((state, when))
                if row[CREATED] is None or when < row[CREATED]:
                    row[CREATED] = when
                # Batches from several processes arrive in any order: the state
                # is the latest event's (a retry's RUNNING after a FAILED counts).
                if when >= row[LATEST]:
                    row[LATEST] = when
                    row[STATE] = state
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            raise ValueError(f"malformed task events: {exc!r}") from None

    def worker_died(self, worker_id: bytes, message: str) -> None:
        """Tasks that were running in a worker that died have failed."""
        for row in self._rows.values():
            if row[WORKER] == worker_id and row[STATE] not in ("FINISHED", "FAILED"):
                row[STATE] = "FAILED"
                row[ERROR_TYPE], row[ERROR_MESSAGE] = "WORKER_DIED", message

    def all(self, job_id=None) -> list:
        out = []
        for task_id, row in self._rows.items():
            if job_id is not None and row[JOB] != job_id:
                continue
            out.append({
                "task_id": task_id, "state": row[STATE], "name": row[NAME],
                "func_or_class_name": row[NAME], "type": row[TYPE] or "NORMAL_TASK",
                "job_id": row[JOB], "parent_task_id": row[PARENT], "actor_id": row[ACTOR],
                "node_id": row[NODE], "worker_id": row[WORKER], "worker_pid": row[PID],
                "error_type": row[ERROR_TYPE], "error_message": row[ERROR_MESSAGE],
                "creation_time": row[CREATED], "start_time": row[STARTED],
                "end_time": row[ENDED], "events": sorted(row[EVENTS], key=lambda e: e[1])})
        return out
