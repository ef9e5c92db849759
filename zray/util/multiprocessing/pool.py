"""Pool: the standard library's ``multiprocessing.Pool`` API on zray actors.

Each pool process is an actor (``_PoolProcess``) that runs batches of calls;
``map``-style methods cut their input into chunks sent round-robin, as the
standard pool does, and an exception raised by the function comes back as a
value and is raised again by ``get()`` (or handed to ``error_callback``).
``maxtasksperchild`` retires an actor after that many batches (it finishes
what it was sent, then exits) and starts a fresh one.
"""
from __future__ import annotations

import collections
import itertools
import threading
from multiprocessing import TimeoutError
from typing import Callable, Iterable, Optional

import zray


class PoolTaskError(Exception):
    """What ``imap`` / ``imap_unordered`` yield for a call that raised (Ray's):
    the exception is in ``underlying``."""

    def __init__(self, underlying):
        super().__init__(underlying)
        self.underlying = underlying


# No CPU of its own, as Ray's pool actors: a pool made inside a pool task (or
# on a busy cluster) still starts; ray_remote_args can ask for CPUs.
@zray.remote(num_cpus=0)
class _PoolProcess:
    def __init__(self, initializer=None, initargs=None):
        if initializer is not None:
            initializer(*(initargs or ()))

    def ready(self):
        return None

    def run_batch(self, func, batch):
        """[(ok, value)] for each (args, kwargs) call: a failure is a value."""
        results = []
        for args, kwargs in batch:
            try:
                results.append((True, func(*args, **kwargs)))
            except Exception as exc:
                results.append((False, exc))
        return results


def _unpack(batches, single: bool):
    """The flat results of ``batches``; raises the first failure."""
    values = []
    for batch in batches:
        for ok, value in batch:
            if not ok:
                raise value
            values.append(value)
    return values[0] if single else values


class AsyncResult:
    """The result of ``apply_async`` / ``map_async`` / ``starmap_async``."""

    def __init__(self, refs: list, single: bool, callback=None, error_callback=None):
        self._refs = refs
        self._single = single
        if callback is not None or error_callback is not None:
            threading.Thread(target=self._run_callbacks, args=(callback, error_callback),
                             daemon=True, name="zray-pool-callback").start()

    def _run_callbacks(self, callback, error_callback) -> None:
        try:
            value = self.get()
        except Exception as exc:
            if error_callback is not None:
                error_callback(exc)
            return
        if callback is not None:
            callback(value)

    def wait(self, timeout: Optional[float] = None) -> None:
        """Until the result is ready or ``timeout`` seconds pass (no error)."""
        zray.wait(self._refs, num_returns=len(self._refs), timeout=timeout)

    def ready(self) -> bool:
        ready, _ = zray.wait(self._refs, num_returns=len(self._refs), timeout=0)
        return len(ready) == len(self._refs)

    def successful(self) -> bool:
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        try:
            self.get(0)
        except Exception:
            return False
        return True

    def get(self, timeout: Optional[float] = None):
        """The value (a list for the map forms); raises what the function raised,
        or multiprocessing.TimeoutError."""
        if timeout is not None:
            ready, _ = zray.wait(self._refs, num_returns=len(self._refs), timeout=timeout)
            if len(ready) < len(self._refs):
                raise TimeoutError
        return _unpack(zray.get(self._refs), self._single)


class IMapIterator:
    """Results of ``imap`` (in order) or ``imap_unordered`` (as they finish);
    keeps about two chunks per process in flight."""

    def __init__(self, pool: "Pool", func, iterable, chunksize: int, ordered: bool):
        self._pool = pool
        self._func = func
        self._chunks = _chunked(iterable, chunksize, unpack=False)
        self._ordered = ordered
        self._in_flight: collections.deque = collections.deque()
        self._ready: collections.deque = collections.deque()
        self._limit = 2 * len(pool._processes)
        self._fill()

    def _fill(self) -> None:
        while len(self._in_flight) < self._limit:
            chunk = next(self._chunks, None)
            if chunk is None:
                return
            self._in_flight.append(self._pool._submit(self._func, chunk))

    def __iter__(self):
        return self

    def __next__(self):
        return self.next()

    def next(self, timeout: Optional[float] = None):
        while not self._ready:
            if not self._in_flight:
                raise StopIteration
            if self._ordered:
                ref = self._in_flight[0]
                if not zray.wait([ref], timeout=timeout)[0]:
                    raise TimeoutError
                self._in_flight.popleft()
            else:
                done, _ = zray.wait(list(self._in_flight), num_returns=1, timeout=timeout)
                if not done:
                    raise TimeoutError
                ref = done[0]
                self._in_flight.remove(ref)
            self._ready.extend(zray.get(ref))
            self._fill()
        ok, value = self._ready.popleft()
        return value if ok else PoolTaskError(value)   # an item, not raised (Ray's imap)


def _chunked(iterable: Iterable, chunksize: int, unpack: bool):
    """Batches of (args, kwargs) of at most ``chunksize`` calls."""
    iterator = iter(iterable)
    while True:
        items = list(itertools.islice(iterator, chunksize))
        if not items:
            return
        yield [((tuple(item) if unpack else (item,)), {}) for item in items]


class Pool:
    """``multiprocessing.Pool`` on zray actors (Ray's ray.util.multiprocessing.Pool).

    ``processes`` defaults to the cluster's CPUs; ``ray_remote_args`` are the
    actors' options (e.g. ``{"num_cpus": 2}``)."""

    def __init__(self, processes: Optional[int] = None, initializer: Optional[Callable] = None,
                 initargs: Optional[tuple] = None, maxtasksperchild: Optional[int] = None,
                 context=None, ray_address: Optional[str] = None,
                 ray_remote_args: Optional[dict] = None):
        if not zray.is_initialized():
            zray.init(address=ray_address, **({"num_cpus": processes}
                                              if ray_address in (None, "local") and processes
                                              else {}))
        cpus = int(zray.cluster_resources().get("CPU", 0))
        processes = cpus if processes is None else processes
        if processes <= 0:
            raise ValueError("Processes in the pool must be >0.")
        if processes > cpus:
            raise ValueError(f"Tried to start a pool with {processes} processes on an existing "
                             f"zray cluster, but there are only {cpus} CPUs in the cluster.")
        if maxtasksperchild is not None and maxtasksperchild < 1:
            raise ValueError("maxtasksperchild must be a positive integer or None.")
        self._initializer = initializer
        self._initargs = initargs
        self._maxtasksperchild = maxtasksperchild
        self._actor_class = _PoolProcess.options(**(ray_remote_args or {}))
        self._processes = [[self._start_process(), 0] for _ in range(processes)]
        self._next = itertools.cycle(range(processes))
        self._stopping: list = []          # __ray_terminate__ refs of retired processes
        self._closed = False
        zray.get([process.ready.remote() for process, _ in self._processes])

    def _start_process(self):
        return self._actor_class.remote(self._initializer, self._initargs)

    def _submit(self, func, batch):
        self._check_running()
        slot = self._processes[next(self._next)]
        ref = slot[0].run_batch.remote(func, batch)
        slot[1] += 1
        if self._maxtasksperchild is not None and slot[1] >= self._maxtasksperchild:
            # It exits after the batches it was sent; new work goes to a fresh one.
            self._stopping.append(slot[0].__ray_terminate__.remote())
            slot[0], slot[1] = self._start_process(), 0
        return ref

    def _check_running(self) -> None:
        if self._closed:
            raise ValueError("Pool not running")

    def _chunksize(self, items: list, chunksize: Optional[int]) -> int:
        if chunksize is not None:
            if chunksize < 1:
                raise ValueError("chunksize must be a positive integer")
            return chunksize
        quotient, remainder = divmod(len(items), len(self._processes) * 4)
        return max(1, quotient + bool(remainder))

    # ------------------------------------------------------------- apply ---
    def apply(self, func: Callable, args: tuple = (), kwds: Optional[dict] = None):
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func: Callable, args: tuple = (), kwds: Optional[dict] = None,
                    callback=None, error_callback=None) -> AsyncResult:
        ref = self._submit(func, [(tuple(args), dict(kwds or {}))])
        return AsyncResult([ref], True, callback, error_callback)

    # --------------------------------------------------------------- map ---
    def _map_async(self, func, iterable, chunksize, unpack, callback, error_callback):
        self._check_running()
        items = list(iterable)
        size = self._chunksize(items, chunksize)
        refs = [self._submit(func, chunk) for chunk in _chunked(items, size, unpack)]
        return AsyncResult(refs, False, callback, error_callback)

    def map(self, func: Callable, iterable: Iterable, chunksize: Optional[int] = None) -> list:
        return self.map_async(func, iterable, chunksize).get()

    def map_async(self, func: Callable, iterable: Iterable, chunksize: Optional[int] = None,
                  callback=None, error_callback=None) -> AsyncResult:
        return self._map_async(func, iterable, chunksize, False, callback, error_callback)

    def starmap(self, func: Callable, iterable: Iterable, chunksize: Optional[int] = None) -> list:
        return self.starmap_async(func, iterable, chunksize).get()

    def starmap_async(self, func: Callable, iterable: Iterable, chunksize: Optional[int] = None,
                      callback=None, error_callback=None) -> AsyncResult:
        return self._map_async(func, iterable, chunksize, True, callback, error_callback)

    def imap(self, func: Callable, iterable: Iterable, chunksize: int = 1) -> IMapIterator:
        self._check_running()
        return IMapIterator(self, func, iterable, chunksize, ordered=True)

    def imap_unordered(self, func: Callable, iterable: Iterable, chunksize: int = 1) -> IMapIterator:
        self._check_running()
        return IMapIterator(self, func, iterable, chunksize, ordered=False)

    # --------------------------------------------------------- lifecycle ---
    def close(self) -> None:
        """No more work; the processes exit once what they were sent is done."""
        if not self._closed:
            self._closed = True
            self._stopping.extend(p.__ray_terminate__.remote() for p, _ in self._processes)

    def terminate(self) -> None:
        """No more work; the processes end now (unfinished results are lost)."""
        self.close()
        for process, _ in self._processes:
            zray.kill(process)

    def join(self) -> None:
        """Wait for the processes of a closed pool to exit."""
        if not self._closed:
            raise ValueError("Pool is still running")
        if self._stopping:
            zray.wait(self._stopping, num_returns=len(self._stopping))
            self._stopping = []

    def __enter__(self):
        self._check_running()
        return self

    def __exit__(self, *exc_info):
        self.terminate()
