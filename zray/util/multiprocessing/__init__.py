"""zray.util.multiprocessing: a ``multiprocessing.Pool`` whose processes are
zray actors (Ray's ray.util.multiprocessing), so pool code scales out
unchanged."""
from multiprocessing import TimeoutError

from .pool import AsyncResult, Pool

__all__ = ["AsyncResult", "Pool", "TimeoutError"]
