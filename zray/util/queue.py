"""``zray.util.queue.Queue``: Ray's first-in first-out queue shared between
tasks and actors, kept in an async actor (``ray.util.queue``)."""
from __future__ import annotations

import asyncio
import queue
from typing import Any, Iterable, List, Optional


class Empty(queue.Empty):
    pass


class Full(queue.Full):
    pass


def _check_timeout(timeout) -> None:
    if timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")


class Queue:
    """A queue whose items live in an actor; pass the Queue itself to tasks
    and actors.  ``maxsize`` <= 0 means unbounded.  ``actor_options`` are
    ``.options()`` for that actor (e.g. ``{"num_cpus": 0}``)."""

    def __init__(self, maxsize: int = 0, actor_options: Optional[dict] = None) -> None:
        from .. import api
        self.maxsize = maxsize
        self.actor = api.remote(_QueueActor).options(**(actor_options or {})).remote(maxsize)

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        return _get(self.actor.qsize.remote())

    def qsize(self) -> int:
        return self.size()

    def empty(self) -> bool:
        return _get(self.actor.empty.remote())

    def full(self) -> bool:
        return _get(self.actor.full.remote())

    def put(self, item: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        """Add an item; blocks while full (``Full`` after ``timeout`` seconds,
        or at once with ``block=False``)."""
        if not block:
            return self.put_nowait(item)
        _check_timeout(timeout)
        _get(self.actor.put.remote(item, timeout))

    async def put_async(self, item: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        if not block:
            return await self.actor.put_nowait.remote(item)
        _check_timeout(timeout)
        await self.actor.put.remote(item, timeout)

    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Remove and return the oldest item; blocks while empty (``Empty``
        after ``timeout`` seconds, or at once with ``block=False``)."""
        if not block:
            return self.get_nowait()
        _check_timeout(timeout)
        return _get(self.actor.get.remote(timeout))

    async def get_async(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        if not block:
            return await self.actor.get_nowait.remote()
        _check_timeout(timeout)
        return await self.actor.get.remote(timeout)

    def put_nowait(self, item: Any) -> None:
        _get(self.actor.put_nowait.remote(item))

    def put_nowait_batch(self, items: Iterable) -> None:
        """Add every item, or none if they do not all fit (``Full``)."""
        if not isinstance(items, Iterable):
            raise TypeError("Argument 'items' must be an Iterable")
        _get(self.actor.put_nowait_batch.remote(list(items)))

    def get_nowait(self) -> Any:
        return _get(self.actor.get_nowait.remote())

    def get_nowait_batch(self, num_items: int) -> List[Any]:
        """``num_items`` items, or none if fewer are queued (``Empty``)."""
        if not isinstance(num_items, int) or num_items < 0:
            raise ValueError("'num_items' must be a nonnegative integer")
        return _get(self.actor.get_nowait_batch.remote(num_items))

    def shutdown(self, force: bool = False, grace_period_s: int = 5) -> None:
        """End the queue's actor (items still queued are lost)."""
        from .. import api
        if self.actor is None:
            return
        if force:
            api.kill(self.actor, no_restart=True)
        else:
            done = self.actor.__ray_terminate__.remote()
            try:
                api.wait([done], timeout=grace_period_s)
            finally:
                api.kill(self.actor, no_restart=True)
        self.actor = None


def _get(ref):
    """get(); the actor's Empty / Full arrive as RayTaskError(Empty) /
    RayTaskError(Full), which ``except Empty`` / ``except Full`` catch."""
    from .. import api
    return api.get(ref)


class _QueueActor:
    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.queue: asyncio.Queue = asyncio.Queue(maxsize)

    def qsize(self) -> int:
        return self.queue.qsize()

    def empty(self) -> bool:
        return self.queue.empty()

    def full(self) -> bool:
        return self.queue.full()

    async def put(self, item, timeout=None) -> None:
        try:
            await asyncio.wait_for(self.queue.put(item), timeout)
        except asyncio.TimeoutError:
            raise Full from None

    async def get(self, timeout=None):
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            raise Empty from None

    def put_nowait(self, item) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            raise Full from None

    def put_nowait_batch(self, items) -> None:
        if self.maxsize > 0 and len(items) + self.qsize() > self.maxsize:
            raise Full(f"Cannot add {len(items)} items to queue of size {self.qsize()} "
                       f"and maxsize {self.maxsize}.")
        for item in items:
            self.queue.put_nowait(item)

    def get_nowait(self):
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            raise Empty from None

    def get_nowait_batch(self, num_items: int):
        if num_items > self.qsize():
            raise Empty(f"Cannot get {num_items} items from queue of size {self.qsize()}.")
        return [self.queue.get_nowait() for _ in range(num_items)]
