"""Python equivalent of `zray memory` (Ray: ``ray._private.internal_api.memory_summary``)."""
from __future__ import annotations

from ..core import memory_view


def memory_summary(as_dict: bool = False, stats_only: bool = False, limit: int = 100):
    """Every object known on this node: id, size, owner, where it lives
    (in-process, shm on node X, spilled on node X), who references it and how
    (local, borrowed, pinned by task, captured); then per-node totals with
    spill / restore counts and bytes.  Text as `zray memory` prints it, or
    the same data as a dict with ``as_dict=True``."""
    summary = memory_view.memory_summary()
    if as_dict:
        return summary
    if stats_only:
        return "\n".join(memory_view.format_node_totals(n) for n in summary["nodes"])
    return memory_view.format_memory_summary(summary, limit=limit)
