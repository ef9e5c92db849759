"""zray.util: helpers on top of the core API (Ray's ray.util)."""
from .actor_pool import ActorPool
from .check_serialize import inspect_serializability
from .memory import memory_summary
from .names import get_node_ip_address, list_named_actors

__all__ = ["ActorPool", "get_node_ip_address", "inspect_serializability", "list_named_actors",
           "memory_summary"]
