"""zray.util: helpers on top of the core API (Ray's ray.util)."""
from .actor_pool import ActorPool
from .memory import memory_summary

__all__ = ["ActorPool", "memory_summary"]
