"""zray.util: helpers on top of the core API (Ray's ray.util)."""
from . import scheduling_strategies
from .actor_pool import ActorPool
from .check_serialize import inspect_serializability
from .helpers import as_completed, map_unordered
from .memory import memory_summary
from .names import get_node_ip_address, list_named_actors
from .serializers import deregister_serializer, register_serializer
# The function shadows its module as an attribute, as in Ray; `from
# zray.util.placement_group import ...` still finds the module.
from .placement_group import (get_current_placement_group, get_placement_group, placement_group,
                              placement_group_table, remove_placement_group)

__all__ = ["ActorPool", "as_completed", "deregister_serializer", "get_current_placement_group",
           "get_node_ip_address", "get_placement_group", "inspect_serializability",
           "list_named_actors", "map_unordered", "memory_summary", "placement_group",
           "placement_group_table", "register_serializer", "remove_placement_group",
           "scheduling_strategies"]
