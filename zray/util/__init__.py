"""zray.util: helpers on top of the core API (Ray's ray.util)."""
from .actor_pool import ActorPool

__all__ = ["ActorPool"]
