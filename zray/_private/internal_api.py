"""Ray's ``ray._private.internal_api`` calls that programs use."""
from __future__ import annotations

__all__ = ["global_gc"]


def global_gc() -> None:
    """Run Python's garbage collector in every worker and driver of the node
    now (zray/node/gc_trigger.py), freeing objects and actors kept alive only by
    reference cycles.  Returns at once; the collections follow within a tick."""
    from ..api import _auto_init
    from ..sockets import messages as m
    _auto_init().send_raylet(m.TriggerGlobalGC())
