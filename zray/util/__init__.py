"""zray.util: helpers on top of the core API (Ray's ray.util).

The newer helpers load on first use (PEP 562 ``__getattr__``): every zray
process imports this package, and the GCS, raylet and fork server never
need them."""
from .actor_pool import ActorPool
from .check_serialize import inspect_serializability
from .memory import memory_summary
from .names import get_node_ip_address, list_named_actors
# Loaded now, not lazily: the function shadows its module as an attribute, as
# in Ray, which only holds if the module is imported first (`from
# zray.util.placement_group import ...` still finds the module).
from .placement_group import (get_current_placement_group, get_placement_group, placement_group,
                              placement_group_table, remove_placement_group)

# name -> submodule that defines it
_LAZY = {
    "as_completed": "helpers", "map_unordered": "helpers",
    "register_serializer": "serializers", "deregister_serializer": "serializers",
}
_SUBMODULES = {"scheduling_strategies", "queue", "multiprocessing", "state", "annotations"}


def __getattr__(name):
    import importlib
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)


__all__ = ["ActorPool", "get_current_placement_group", "get_node_ip_address",
           "get_placement_group", "inspect_serializability", "list_named_actors",
           "memory_summary", "placement_group", "placement_group_table",
           "remove_placement_group", *sorted(_LAZY), "scheduling_strategies"]
