"""ActorPool: run work over a fixed set of actors (Ray's ray.util.ActorPool).

Semantics follow Ray 2.60: ``map``/``map_unordered`` submit every value at
once and return a generator of results; a timed-out ``get_next*`` raises the
built-in TimeoutError (with ``ignore_if_timedout`` it first skips the task);
an actor that died is not handed work again."""
from __future__ import annotations

from .. import api
from ..exceptions import ActorDiedError

_TIMEOUT_MESSAGE = "Timed out waiting for result"


class ActorPool:
    def __init__(self, actors: list):
        self._idle_actors = list(actors)
        self._future_to_actor = {}       # key ref -> (task index, actor)
        self._index_to_future = {}       # task index -> what fn returned
        self._next_task_index = 0
        self._next_return_index = 0
        self._pending_submits = []

    def map(self, fn, values):
        self._drop_earlier_results()
        for value in values:
            self.submit(fn, value)

        def results():
            while self.has_next():
                yield self.get_next()
        return results()

    def map_unordered(self, fn, values):
        self._drop_earlier_results()
        for value in values:
            self.submit(fn, value)

        def results():
            while self.has_next():
                yield self.get_next_unordered()
        return results()

    def _drop_earlier_results(self) -> None:
        """Results nobody collected from earlier calls are skipped, as in Ray."""
        while self.has_next():
            try:
                self.get_next(timeout=0, ignore_if_timedout=True)
            except TimeoutError:
                pass

    def submit(self, fn, value) -> None:
        if self._idle_actors:
            actor = self._idle_actors.pop()
            future = fn(actor, value)
            self._future_to_actor[_key(future)] = (self._next_task_index, actor)
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
        timed_out = False
        if timeout is not None:
            ready, _ = api.wait([_key(future)], timeout=timeout)
            if not ready:
                if not ignore_if_timedout:
                    raise TimeoutError(_TIMEOUT_MESSAGE)
                timed_out = True
        del self._index_to_future[self._next_return_index]
        self._next_return_index += 1
        _, actor = self._future_to_actor.pop(_key(future))
        if timed_out:
            self._return_actor(actor)
            raise TimeoutError(f"{_TIMEOUT_MESSAGE}. The task {future} has been ignored.")
        return self._get_result(future, actor)

    def get_next_unordered(self, timeout=None, ignore_if_timedout=False):
        if not self.has_next():
            raise StopIteration("No more results to get")
        ready, _ = api.wait(list(self._future_to_actor), num_returns=1, timeout=timeout)
        if not ready:
            if not ignore_if_timedout:
                raise TimeoutError(_TIMEOUT_MESSAGE)
            key = next(iter(self._future_to_actor))    # skip the oldest
        else:
            key = ready[0]
        index, actor = self._future_to_actor.pop(key)
        future = self._index_to_future.pop(index)
        self._next_return_index = max(self._next_return_index, index + 1)
        if not ready:
            self._return_actor(actor)
            raise TimeoutError(f"{_TIMEOUT_MESSAGE}. The task {future} has been ignored.")
        return self._get_result(future, actor)

    def _get_result(self, future, actor):
        alive = True
        try:
            return api.get(future)
        except ActorDiedError:
            alive = False
            raise
        finally:
            self._return_actor(actor, alive)

    def _return_actor(self, actor, alive: bool = True) -> None:
        if alive:   # a dead actor would take every submit and never answer
            self._idle_actors.append(actor)
        if self._pending_submits and self._idle_actors:
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


def _key(future):
    """The ref that stands for a submitted call (the first, if fn returned a list)."""
    return future[0] if isinstance(future, list) else future
