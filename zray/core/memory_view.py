"""What holds memory in the cluster: the data behind ``zray memory``.

``node_stats()`` asks this process's raylet (GetNodeStats) for its store:
usage, objects in shared memory, spilled objects, spill/restore counters and
the processes connected to it.  ``reference_summary(cw)`` is what one core
worker's reference table holds; ``memory_summary()`` asks every process on
the node for theirs (GetReferenceSummary) and joins the two into one row per
object: size, owner, where it lives and who references it how.

Reference kinds (Ray's names in parentheses):
    local           ObjectRefs alive in the owner (LOCAL_REFERENCE)
    borrowed        ObjectRefs alive in a process that does not own it
    pinned by task  used as an argument by a task not finished yet (USED_BY_PENDING_TASK)
    captured        captured in a remote function's or class's definition: pinned for the job
"""
from __future__ import annotations

import os

from ..sockets import messages as m
from ..sockets.messages import ReturnKind
from ..ids import is_actor_handle_object
from ..pids import pid_alive
from . import process_state
from .pending import PENDING

INLINE, IN_STORE, ERROR = map(int, (ReturnKind.INLINE, ReturnKind.IN_STORE, ReturnKind.ERROR))
SUMMARY_TIMEOUT_S = 5.0


def node_stats(timeout: float = 10.0) -> dict:
    """Store usage of this host's raylet: used_bytes, capacity, num_objects,
    objects [(id hex, size, readers)], spilled [(id hex, size)], spill and
    restore counters, clients [(worker id hex, pid, endpoint, is_driver)]."""
    cw = process_state.require_worker()
    return cw.raylet_call(lambda rid: m.GetNodeStats(rid), timeout=timeout).stats


def reference_summary(cw) -> dict:
    """This process's reference table (lock held by the caller or taken here)."""
    rows = []
    for object_id, entry in list(cw.refs.objects.items()):
        if is_actor_handle_object(object_id):
            continue   # counts an actor's handles; holds no value
        kind = entry.kind
        size, node = None, None
        if kind == INLINE and entry.data is not None:
            size = len(entry.data)
        elif kind == IN_STORE and entry.data is not None:
            node, size = entry.data[0].hex(), entry.data[1]
        rows.append({
            "object_id": object_id.hex(), "owned": entry.owned,
            "owner_id": entry.owner[0].hex() if entry.owner else None,
            "local_refs": entry.refs, "task_refs": entry.task_refs,
            "borrowers": sum(1 for n in (entry.borrowers or {}).values() if n > 0),
            "captured": entry.pinned_reason == "captured",
            "where": {INLINE: "in-process", IN_STORE: "shm", ERROR: "error"}.get(kind, "pending"),
            "size": size, "node_id": node})
    return {"worker_id": cw.worker_id.hex(), "pid": os.getpid(), "is_driver": cw.is_driver,
            "objects": rows, **cw.refs.stats()}


def local_object_summary() -> dict:
    """This process's reference table, after applying its dropped refs."""
    cw = process_state.require_worker()
    cw.loop.acquire()
    try:
        cw.flush_ref_ops()
        return reference_summary(cw)
    finally:
        cw.loop.release()


def memory_summary(timeout: float = SUMMARY_TIMEOUT_S) -> dict:
    """One row per object known to any process on this node, plus node totals:
    {"objects": [...], "nodes": [...], "processes": [...], "unreachable": [...]}."""
    cw = process_state.require_worker()
    stats = node_stats()
    tables = [local_object_summary()]
    tables += _ask_processes(cw, [c for c in stats["clients"] if c[0] != cw.worker_id.hex()],
                             timeout)
    unreachable = [t["pid"] for t in tables if t.get("unreachable")]
    tables = [t for t in tables if not t.get("unreachable")]
    return {"objects": _join(stats, tables), "nodes": [_node_totals(stats)],
            "processes": [{"pid": t["pid"], "worker_id": t["worker_id"], "is_driver": t["is_driver"],
                           "num_objects": t["num_objects"]} for t in tables],
            "unreachable": unreachable}


def _ask_processes(cw, clients, timeout) -> list:
    pending = []
    cw.loop.acquire()
    try:
        for worker_id, pid, endpoint, is_driver in clients:
            if not endpoint:
                continue
            rid = cw._new_request()
            cw.loop.send(cw.peer(endpoint), m.encode(m.GetReferenceSummary(rid)))
            pending.append((rid, pid, worker_id, is_driver))
    finally:
        cw.loop.release()
    replies = cw._replies

    def settled():   # answered, or its process is gone (same host: no answer will come)
        return all(replies.get(rid) is not PENDING or not pid_alive(pid) for rid, pid, *_ in pending)

    cw.loop.wait_until(settled, timeout)
    tables = []
    for rid, pid, worker_id, is_driver in pending:
        reply = replies.pop(rid, PENDING)
        if reply is PENDING:   # exited meanwhile, or stuck: say so instead of waiting
            tables.append({"pid": pid, "worker_id": worker_id, "is_driver": is_driver,
                           "unreachable": True})
        else:
            tables.append(reply.summary)
    return tables


def _join(stats: dict, tables: list) -> list:
    node = stats["node_id"]
    in_shm = {oid: size for oid, size, _ in stats["objects"]}
    spilled = dict(stats.get("spilled", ()))
    pids = {t["worker_id"]: t["pid"] for t in tables}
    rows: dict = {}

    def row_for(object_id):
        row = rows.get(object_id)
        if row is None:
            row = rows[object_id] = {"object_id": object_id, "size": None, "owner_pid": None,
                                     "owner_id": None, "where": None, "references": []}
        return row

    for table in tables:
        pid = table["pid"]
        for obj in table["objects"]:
            row = row_for(obj["object_id"])
            refs = row["references"]
            if obj["owned"]:
                row["owner_pid"], row["owner_id"] = pid, table["worker_id"]
                if obj["where"] == "in-process":
                    row["where"], row["size"] = f"in-process (pid {pid})", obj["size"]
                if obj["local_refs"] > 0:
                    refs.append({"kind": "local", "pid": pid, "count": obj["local_refs"]})
            else:
                row["owner_id"] = row["owner_id"] or obj["owner_id"]
                if obj["local_refs"] > 0:
                    refs.append({"kind": "borrowed", "pid": pid, "count": obj["local_refs"]})
            if obj["task_refs"] > 0:
                refs.append({"kind": "pinned by task", "pid": pid, "count": obj["task_refs"]})
            if obj["captured"]:
                refs.append({"kind": "captured", "pid": pid, "count": 1})
            if row["where"] is None and obj["where"] == "error":
                row["where"] = "error"
            elif row["where"] is None and obj["where"] == "shm" and obj["node_id"]:
                row["where"], row["size"] = f"shm on node {obj['node_id'][:12]}", obj["size"]
    for object_id, size in in_shm.items():
        row = row_for(object_id)
        row["where"], row["size"] = f"shm on node {node[:12]}", size
    for object_id, size in spilled.items():
        row = row_for(object_id)
        if object_id in in_shm:     # restored: the spilled copy stays until it is freed
            row["where"] += " + spilled"
        else:
            row["where"], row["size"] = f"spilled on node {node[:12]}", size
    for row in rows.values():
        if row["owner_pid"] is None and row["owner_id"] in pids:
            row["owner_pid"] = pids[row["owner_id"]]
        if row["where"] is None:
            row["where"] = "pending"
    return sorted(rows.values(), key=lambda r: (-(r["size"] or 0), r["object_id"]))


def _node_totals(stats: dict) -> dict:
    keys = ("node_id", "used_bytes", "capacity", "num_objects", "spilled_objects", "spilled_bytes",
            "spilled_objects_total", "spilled_bytes_total", "restored_objects_total",
            "restored_bytes_total")
    return {k: stats.get(k, 0) for k in keys}


def format_memory_summary(summary: dict, limit: int = 100) -> str:
    """The text `zray memory` prints."""
    lines = [f"{'OBJECT ID':<42} {'SIZE':>11}  {'OWNER':<10} {'WHERE':<28} REFERENCES"]
    objects = summary["objects"]
    for row in objects[:limit]:
        owner = f"pid {row['owner_pid']}" if row["owner_pid"] else "?"
        refs = "; ".join(f"{r['kind']} (pid {r['pid']}) x{r['count']}" for r in row["references"])
        lines.append(f"{row['object_id']:<42} {_size(row['size']):>11}  {owner:<10} "
                     f"{row['where']:<28} {refs or '-'}")
    if len(objects) > limit:
        lines.append(f"... {len(objects) - limit} more object(s)")
    lines.append("")
    for node in summary["nodes"]:
        lines.append(format_node_totals(node))
    if summary.get("unreachable"):
        lines.append(f"(no answer from pid(s) {', '.join(map(str, summary['unreachable']))})")
    return "\n".join(lines)


def format_node_totals(stats: dict) -> str:
    return (f"node {stats['node_id'][:12]}: {stats['num_objects']} object(s) in shared memory, "
            f"{stats['used_bytes'] / 2**20:.1f} MiB used of {stats['capacity'] / 2**20:.0f} MiB; "
            f"spilled now: {stats.get('spilled_objects', 0)} object(s), "
            f"{stats.get('spilled_bytes', 0) / 2**20:.1f} MiB; "
            f"spilled in total: {stats.get('spilled_objects_total', 0)} "
            f"({stats.get('spilled_bytes_total', 0) / 2**20:.1f} MiB), "
            f"restored: {stats.get('restored_objects_total', 0)} "
            f"({stats.get('restored_bytes_total', 0) / 2**20:.1f} MiB)")


def _size(size) -> str:
    if size is None:
        return "?"
    if size < 1024:
        return f"{size} B"
    if size < 2**20:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 2**20:.1f} MiB"
