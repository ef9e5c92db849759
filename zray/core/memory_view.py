"""What the object store holds: the data behind ``zray memory``.

``node_stats()`` asks this process's raylet (GetNodeStats) for its store
table; ``local_object_summary()`` lists what this process's reference table
holds (owned / borrowed, inline / in store).
"""
from __future__ import annotations

from ..sockets import messages as m
from . import process_state


def node_stats(timeout: float = 10.0) -> dict:
    """Store usage of this host's raylet: used_bytes, capacity, num_objects,
    objects [(id hex, size, readers)], workers, available/total resources."""
    cw = process_state.require_worker()
    return cw.raylet_call(lambda rid: m.GetNodeStats(rid), timeout=timeout).stats


def local_object_summary() -> dict:
    cw = process_state.require_worker()
    cw.loop.acquire()
    try:
        cw.flush_ref_ops()
        rows = []
        for object_id, entry in cw.refs.objects.items():
            rows.append({"object_id": object_id.hex(), "owned": entry.owned,
                         "local_refs": entry.refs, "task_refs": entry.task_refs,
                         "where": {0: "in-process", 1: "shm", 2: "error"}.get(entry.kind, "pending"),
                         "pinned": bool(entry.pinned_reason)})
        return {"objects": rows, **cw.refs.stats()}
    finally:
        cw.loop.release()


def format_summary(stats: dict) -> str:
    lines = [f"node {stats['node_id'][:12]}: {stats['num_objects']} object(s) in shared memory, "
             f"{stats['used_bytes'] / 2**20:.1f} MiB used of {stats['capacity'] / 2**20:.0f} MiB"]
    lines.append(f"  spilled now: {stats.get('spilled_objects', 0)} object(s), "
                 f"{stats.get('spilled_bytes', 0) / 2**20:.1f} MiB; "
                 f"spilled in total: {stats.get('spilled_objects_total', 0)} "
                 f"({stats.get('spilled_bytes_total', 0) / 2**20:.1f} MiB), "
                 f"restored: {stats.get('restored_objects_total', 0)} "
                 f"({stats.get('restored_bytes_total', 0) / 2**20:.1f} MiB)")
    for object_id, size, readers in stats["objects"][:50]:
        lines.append(f"  {object_id}  {size:>12} bytes  shm  readers={readers}")
    if len(stats["objects"]) > 50:
        lines.append(f"  ... {len(stats['objects']) - 50} more")
    return "\n".join(lines)
