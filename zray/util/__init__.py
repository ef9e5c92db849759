"""zray.util: helpers on top of the core API (Ray's ray.util)."""
from . import scheduling_strategies
from .actor_pool import ActorPool
from .check_serialize import inspect_serializability
from .memory import memory_summary
from .names import get_node_ip_address, list_named_actors
# The function shadows its module as an attribute, as in Ray; `from
# zray.util.placement_group import ...` still finds the module.
from .placement_group import (get_current_placement_group, get_placement_group, placement_group,
                              placement_group_table, remove_placement_group)

__all__ = ["ActorPool", "get_current_placement_group", "get_node_ip_address",
           "get_placement_group", "inspect_serializability", "list_named_actors",
           "memory_summary", "placement_group", "placement_group_table",
           "remove_placement_group", "scheduling_strategies"]
