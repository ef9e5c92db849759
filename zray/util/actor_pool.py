"""ActorPool: run work over a fixed set of actors (Ray's ray.util.ActorPool)."""
from __future__ import annotations

from .. import api
from ..exceptions import GetTimeoutError


class ActorPool:
    def __init__(self, actors: list):
        self._idle_actors = list(actors)
        self._future_to_actor = {}
        self._index_to_future = {}
        self._next_task_index = 0
        self._next_return_index = 0
        self._pending_submits = []

    def map(self, fn, values):
        # Ignore/clear any results left from earlier calls, as Ray does.
        while self.has_next():
            try:
                self.get_next_unordered(timeout=0)
            except GetTimeoutError:
                break
        for value in values:
            self.submit(fn, value)
        while self.has_next():
            yield self.get_next()

    def map_unordered(self, fn, values):
        while self.has_next():
            try:
                self.get_next_unordered(timeout=0)
            except GetTimeoutError:
                break
        for value in values:
            self.submit(fn, value)
        while self.has_next():
            yield self.get_next_unordered()

    def submit(self, fn, value) -> None:
        if self._idle_actors:
            actor = self._idle_actors.pop()
            future = fn(actor, value)
            key = future[0] if isinstance(future, list) else future
            self._future_to_actor[key] = (self._next_task_index, actor)
            self._index_to_future[self._next_task_index] = future
            self._next_task_index += 1
        else:
            self._pending_submits.append((fn, value))

    def has_next(self) -> bool:
        return bool(self._future_to_actor)

    def get_next(self, timeout=None, ignore_if_timedout=False):
        if not self.has_next():
            raise StopIteration("No more results to get")
        if self._next_return_index >= self._next_task_index:
            raise ValueError("It is not allowed to call get_next() after get_next_unordered().")
        future = self._index_to_future[self._next_return_index]
        key = future[0] if isinstance(future, list) else future
        if timeout is not None:
            ready, _ = api.wait([key], timeout=timeout)
            if not ready:
                if ignore_if_timedout:
                    del self._index_to_future[self._next_return_index]
                    self._next_return_index += 1
                    _, actor = self._future_to_actor.pop(key)
                    self._return_actor(actor)
                    return None
                raise TimeoutError("Timed out waiting for result")
        del self._index_to_future[self._next_return_index]
        self._next_return_index += 1
        _, actor = self._future_to_actor.pop(key)
        self._return_actor(actor)
        return api.get(future)

    def get_next_unordered(self, timeout=None, ignore_if_timedout=False):
        if not self.has_next():
            raise StopIteration("No more results to get")
        ready, _ = api.wait(list(self._future_to_actor), num_returns=1, timeout=timeout)
        if not ready:
            if ignore_if_timedout:
                return None
            raise TimeoutError("Timed out waiting for result")
        key = ready[0]
        index, actor = self._future_to_actor.pop(key)
        future = self._index_to_future.pop(index)
        self._return_actor(actor)
        return api.get(future)

    def _return_actor(self, actor) -> None:
        self._idle_actors.append(actor)
        if self._pending_submits:
            self.submit(*self._pending_submits.pop(0))

    def has_free(self) -> bool:
        return bool(self._idle_actors) and not self._pending_submits

    def pop_idle(self):
        return self._idle_actors.pop() if self.has_free() else None

    def push(self, actor) -> None:
        busy = [a for _, a in self._future_to_actor.values()]
        if actor in self._idle_actors or actor in busy:
            raise ValueError("Actor already belongs to current ActorPool")
        self._return_actor(actor)
