"""Ray's state API (ray.util.state): what the cluster holds now - actors,
nodes, placement groups, jobs, workers, objects - as lists of records with
Ray's field names, from the GCS tables and this node's raylet.

``filters`` are Ray's ``[(field, "=" | "!=", value)]`` (compared as strings);
``limit`` caps the rows.  Tasks come from the task events every process sends
the GCS about once a second (zray.core.task_events), so a task shows up
within about a second of a state change."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import List, Optional

from ..sockets.messages import GcsMethod

DEFAULT_LIMIT = 100


class _Record:
    """Attribute and item access, like Ray's state dataclasses."""

    def __getitem__(self, key):
        return getattr(self, key)

    def asdict(self) -> dict:
        return asdict(self)


@dataclass
class ActorState(_Record):
    actor_id: str
    class_name: str
    state: str
    job_id: str
    name: str
    node_id: Optional[str]
    pid: Optional[int]
    ray_namespace: str
    is_detached: bool
    num_restarts: int
    required_resources: dict = field(default_factory=dict)
    death_cause: Optional[dict] = None


@dataclass
class NodeState(_Record):
    node_id: str
    node_ip: str
    is_head_node: bool
    state: str
    node_name: str
    resources_total: dict
    labels: dict


@dataclass
class PlacementGroupState(_Record):
    placement_group_id: str
    name: str
    creator_job_id: str
    state: str
    bundles: list
    is_detached: bool
    stats: dict


@dataclass
class JobState(_Record):
    job_id: str
    status: str
    driver_pid: Optional[int]
    namespace: str
    start_time: Optional[float]
    end_time: Optional[float]


@dataclass
class WorkerState(_Record):
    worker_id: str
    is_alive: bool
    worker_type: str
    node_id: str
    pid: int


@dataclass
class TaskState(_Record):
    task_id: str
    attempt_number: int
    name: str
    state: str
    job_id: str
    actor_id: Optional[str]
    type: str
    func_or_class_name: str
    parent_task_id: str
    node_id: Optional[str]
    worker_id: Optional[str]
    worker_pid: Optional[int]
    error_type: Optional[str]
    error_message: Optional[str] = None
    required_resources: dict = field(default_factory=dict)
    creation_time_ms: Optional[int] = None
    start_time_ms: Optional[int] = None
    end_time_ms: Optional[int] = None
    events: list = field(default_factory=list)


@dataclass
class ObjectState(_Record):
    object_id: str
    object_size: Optional[int]
    reference_type: str
    pid: Optional[int]
    where: Optional[str]


# --------------------------------------------------------------- listings ---
def list_actors(address=None, filters=None, limit: int = DEFAULT_LIMIT, timeout: int = 30,
                detail: bool = False, raise_on_missing_output: bool = True) -> List[ActorState]:
    cw = _worker()
    pids = _pids(cw)
    rows = []
    for info in cw.gcs_call(GcsMethod.GET_ALL_ACTORS, timeout=timeout):
        worker = info.get("worker_id")
        death = {"message": info["death_message"]} if info.get("death_message") else None
        rows.append(ActorState(
            actor_id=info["actor_id"].hex(), class_name=info.get("class_name") or "",
            state=info["state"], job_id=_hex(info.get("job_id")), name=info.get("name") or "",
            node_id=_hex(info.get("node_id")) or None,
            pid=pids.get(worker) if worker else None, ray_namespace=info.get("namespace") or "",
            is_detached=bool(info.get("detached")), num_restarts=info.get("num_restarts") or 0,
            required_resources=info.get("resources") or {}, death_cause=death))
    return _select(rows, filters, limit)


def list_nodes(address=None, filters=None, limit: int = DEFAULT_LIMIT, timeout: int = 30,
               detail: bool = False, raise_on_missing_output: bool = True) -> List[NodeState]:
    nodes = _worker().gcs_call(GcsMethod.GET_ALL_NODES, timeout=timeout)
    rows = [NodeState(node_id=n["node_id"].hex(), node_ip=n.get("node_ip", ""),
                      is_head_node=i == 0, state=n["state"], node_name=n.get("node_ip", ""),
                      resources_total=dict(n.get("resources_total") or {}),
                      labels={"ray.io/node-id": n["node_id"].hex()})
            for i, n in enumerate(nodes)]
    return _select(rows, filters, limit)


def list_placement_groups(address=None, filters=None, limit: int = DEFAULT_LIMIT,
                          timeout: int = 30, detail: bool = False,
                          raise_on_missing_output: bool = True) -> List[PlacementGroupState]:
    groups = _worker().gcs_call(GcsMethod.GET_ALL_PLACEMENT_GROUPS, timeout=timeout)
    rows = [PlacementGroupState(
        placement_group_id=g["pg_id"].hex(), name=g["name"], creator_job_id=_hex(g["job_id"]),
        state=g["state"], is_detached=g["detached"],
        bundles=[{"bundle_id": i, "node_id": _hex(node) or None, "unit_resources": dict(b)}
                 for i, (b, node) in enumerate(zip(g["bundles"], g["bundle_nodes"]))],
        stats={"scheduling_attempt": g["scheduling_attempts"]}) for g in groups]
    return _select(rows, filters, limit)


def list_jobs(address=None, filters=None, limit: int = DEFAULT_LIMIT, timeout: int = 30,
              detail: bool = False, raise_on_missing_output: bool = True) -> List[JobState]:
    jobs = _worker().gcs_call(GcsMethod.GET_ALL_JOBS, timeout=timeout)
    rows = [JobState(job_id=j["job_id"].hex(), status="SUCCEEDED" if j["state"] == "FINISHED"
                     else j["state"], driver_pid=j.get("pid"), namespace=j.get("namespace", ""),
                     start_time=j.get("start_time"), end_time=j.get("end_time"))
            for j in sorted(jobs, key=lambda j: j["job_int"])]
    return _select(rows, filters, limit)


def list_workers(address=None, filters=None, limit: int = DEFAULT_LIMIT, timeout: int = 30,
                 detail: bool = False, raise_on_missing_output: bool = True) -> List[WorkerState]:
    from ..core.memory_view import node_stats
    stats = node_stats(timeout)
    rows = [WorkerState(worker_id=worker_id, is_alive=True,
                        worker_type="DRIVER" if is_driver else "WORKER",
                        node_id=stats["node_id"], pid=pid)
            for worker_id, pid, _, is_driver in stats["clients"]]
    return _select(rows, filters, limit)


def list_objects(address=None, filters=None, limit: int = DEFAULT_LIMIT, timeout: int = 30,
                 detail: bool = False, raise_on_missing_output: bool = True) -> List[ObjectState]:
    from ..core.memory_view import memory_summary
    rows = []
    for obj in memory_summary()["objects"]:
        refs = obj["references"] or [{"kind": "unreferenced", "pid": None}]
        for ref in refs:
            rows.append(ObjectState(object_id=obj["object_id"], object_size=obj["size"],
                                    reference_type=_REFERENCE_TYPES.get(ref["kind"], ref["kind"]),
                                    pid=ref.get("pid"), where=obj["where"]))
    return _select(rows, filters, limit)


_REFERENCE_TYPES = {"local": "LOCAL_REFERENCE", "borrowed": "LOCAL_REFERENCE",
                    "pinned by task": "USED_BY_PENDING_TASK",
                    "captured": "CAPTURED_IN_OBJECT"}


# ------------------------------------------------------------------ gets ---
def get_actor(id: str, address=None, timeout: int = 30) -> Optional[ActorState]:
    return _one(list_actors(filters=[("actor_id", "=", id)], limit=1, timeout=timeout))


def get_node(id: str, address=None, timeout: int = 30) -> Optional[NodeState]:
    return _one(list_nodes(filters=[("node_id", "=", id)], limit=1, timeout=timeout))


def get_placement_group(id: str, address=None, timeout: int = 30) -> Optional[PlacementGroupState]:
    return _one(list_placement_groups(filters=[("placement_group_id", "=", id)], limit=1,
                                      timeout=timeout))


def get_job(id: str, address=None, timeout: int = 30) -> Optional[JobState]:
    return _one(list_jobs(filters=[("job_id", "=", id)], limit=1, timeout=timeout))


def get_worker(id: str, address=None, timeout: int = 30) -> Optional[WorkerState]:
    return _one(list_workers(filters=[("worker_id", "=", id)], limit=1, timeout=timeout))


def list_tasks(address=None, filters=None, limit: int = DEFAULT_LIMIT, timeout: int = 30,
               detail: bool = False, raise_on_missing_output: bool = True) -> List[TaskState]:
    rows = [_task_state(r, detail) for r in task_records(timeout)]
    return _select(rows, filters, limit)


def get_task(id: str, address=None, timeout: int = 30) -> Optional[TaskState]:
    return _one(list_tasks(filters=[("task_id", "=", id)], limit=1, timeout=timeout))


def summarize_tasks(address=None, timeout: int = 30, raise_on_missing_output: bool = True) -> dict:
    """Ray's task summary: per function or method, how many tasks are in each state."""
    summary: dict = {}
    for record in task_records(timeout):
        name = record.get("func_or_class_name") or record.get("name") or "?"
        row = summary.setdefault(name, {"func_or_class_name": name, "type": record.get("type"),
                                        "state_counts": {}})
        row["state_counts"][record["state"]] = row["state_counts"].get(record["state"], 0) + 1
    return {"cluster": {"summary": summary, "total_tasks": sum(
        sum(r["state_counts"].values()) for r in summary.values())}}


def task_records(timeout: int = 30) -> list:
    """The GCS's task rows, after this process's own unsent events reach it."""
    cw = _worker()
    cw.loop.acquire()
    try:
        cw.task_events.flush_due(cw, 0.0, force=True)
    finally:
        cw.loop.release()
    return cw.gcs_call(GcsMethod.GET_TASK_EVENTS, timeout=timeout)


def _task_state(record: dict, detail: bool) -> TaskState:
    def ms(key):
        value = record.get(key)
        return int(value * 1000) if value is not None else None
    return TaskState(
        task_id=record["task_id"].hex(), attempt_number=0, name=record.get("name") or "",
        state=record["state"], job_id=_hex(record.get("job_id")),
        actor_id=_hex(record.get("actor_id")) or None, type=record.get("type") or "NORMAL_TASK",
        func_or_class_name=record.get("func_or_class_name") or "",
        parent_task_id=_hex(record.get("parent_task_id")), node_id=_hex(record.get("node_id")) or None,
        worker_id=_hex(record.get("worker_id")) or None, worker_pid=record.get("worker_pid"),
        error_type=record.get("error_type"), error_message=record.get("error_message"),
        required_resources=dict(record.get("required_resources") or {}),
        creation_time_ms=ms("creation_time"), start_time_ms=ms("start_time"),
        end_time_ms=ms("end_time"),
        events=[{"state": s, "created_ms": int(t * 1000)} for s, t in record["events"]]
        if detail else [])


def timeline(filename: Optional[str] = None):
    """Ray's ``ray.timeline()``: every task that ran, as Chrome trace events
    ("X" spans: one row per worker process), written to ``filename`` as JSON
    or returned as a list (open it in chrome://tracing or Perfetto)."""
    events = []
    for record in task_records():
        start, end = record.get("start_time"), record.get("end_time")
        if start is None:
            continue
        end = end if end is not None else start
        name = record.get("name") or "task"
        events.append({
            "cat": f"task::{name}", "name": f"task::{name}", "ph": "X",
            "pid": f"Node {_hex(record.get('node_id'))[:12]}",
            "tid": f"Worker {record.get('worker_pid')}",
            "ts": start * 1e6, "dur": max(0.0, end - start) * 1e6,
            "cname": "rail_response" if record["state"] == "FAILED" else "generic_work",
            "args": {"task_id": record["task_id"].hex(), "job_id": _hex(record.get("job_id")),
                     "state": record["state"], "type": record.get("type")}})
    events.sort(key=lambda e: e["ts"])
    if filename is None:
        return events
    import json
    with open(filename, "w") as f:
        json.dump(events, f)
    return None


# ------------------------------------------------------------- internals ---
def _worker():
    from ..api import _auto_init
    return _auto_init()


def _hex(value) -> str:
    return value.hex() if isinstance(value, bytes) else (value or "")


def _pids(cw) -> dict:
    """worker id -> pid of this node's clients."""
    from ..core.memory_view import node_stats
    return {bytes.fromhex(worker_id): pid for worker_id, pid, _, _ in node_stats()["clients"]}


def _select(rows: list, filters, limit: int) -> list:
    for key, predicate, value in filters or ():
        if predicate not in ("=", "!="):
            raise ValueError(f"Unsupported filter predicate {predicate!r}: use '=' or '!='.")
        if rows and not hasattr(rows[0], key):
            raise ValueError(f"{key!r} is not a field of {type(rows[0]).__name__}")
        wanted = str(value).lower()
        rows = [r for r in rows if (str(getattr(r, key)).lower() == wanted) == (predicate == "=")]
    return rows[:limit]


def _one(rows: list):
    return rows[0] if rows else None
