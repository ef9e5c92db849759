"""The GCS's record of tasks, merged from the task events processes send
(zray.core.task_events): one row per task with its latest state, its times
and its state history, for ``list_tasks`` and ``timeline``.  In memory and
bounded (the oldest tasks go first), as Ray's GCS task manager."""
from __future__ import annotations

from collections import OrderedDict

MAX_TASKS_IN_GCS = 100_000
FINAL_STATES = ("FINISHED", "FAILED")


class TaskEventStore:
    def __init__(self, max_tasks: int = MAX_TASKS_IN_GCS):
        self._tasks: OrderedDict = OrderedDict()     # task_id -> record
        self._max = max_tasks
        self.evicted = 0

    def add(self, events) -> None:
        """Merge ``[(task_id, state, unix time, info or None)]``; malformed ones
        raise ValueError (the request fails, naming the problem)."""
        for event in events:
            try:
                task_id, state, when, info = event
            except (TypeError, ValueError):
                raise ValueError(f"a task event must be (task_id, state, time, info), "
                                 f"got {event!r}") from None
            if not isinstance(task_id, bytes) or not isinstance(state, str):
                raise ValueError(f"bad task event {event!r}")
            record = self._tasks.get(task_id)
            if record is None:
                record = self._tasks[task_id] = {"task_id": task_id, "state": state,
                                                 "events": []}
                if len(self._tasks) > self._max:
                    self._tasks.popitem(last=False)
                    self.evicted += 1
            if info:
                record.update(info)
            when = float(when)
            record["events"].append((state, when))
            # Processes send their batches independently: the state is that of
            # the latest event (a retry's RUNNING after a FAILED counts, a late
            # batch's PENDING does not).
            if when >= record.get("_latest", 0.0):
                record["_latest"] = when
                record["state"] = state
            if state == "RUNNING":
                record["start_time"] = when
                if record.get("end_time", when) < when:
                    del record["end_time"]          # a retry: running again
            elif state in FINAL_STATES:
                record["end_time"] = max(record.get("end_time", when), when)
            record["creation_time"] = min(record.get("creation_time", when), when)

    def worker_died(self, worker_id: bytes, message: str) -> None:
        """Tasks that were running in a worker that died have failed."""
        for record in self._tasks.values():
            if record.get("worker_id") == worker_id and record["state"] not in FINAL_STATES:
                record["state"] = "FAILED"
                record["error_type"] = "WORKER_DIED"
                record["error_message"] = message

    def all(self, job_id=None) -> list:
        return [{**{k: v for k, v in r.items() if k != "_latest"},
                 "events": sorted(r["events"], key=lambda e: e[1])}
                for r in self._tasks.values() if job_id is None or r.get("job_id") == job_id]
