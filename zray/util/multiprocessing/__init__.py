"""zray.util.multiprocessing: a ``multiprocessing.Pool`` whose processes are
zray actors (Ray's ray.util.multiprocessing), so pool code scales out
unchanged."""
from multiprocessing import JoinableQueue, TimeoutError

from .pool import AsyncResult, Pool, PoolTaskError

__all__ = ["AsyncResult", "JoinableQueue", "Pool", "PoolTaskError", "TimeoutError"]
