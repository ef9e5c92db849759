"""Ray's result-streaming helpers (ray.util.as_completed / map_unordered):
yield results as tasks finish instead of one get() that waits for all."""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Optional

import zray

DEFAULT_CHUNK_SIZE = 10
DEFAULT_BACKPRESSURE_SIZE = 100


def _check(chunk_size: int, wait_kwargs: dict) -> None:
    if chunk_size < 1:
        raise ValueError("`chunk_size` must be >= 1")
    if "num_returns" in wait_kwargs:
        raise ValueError("Use the `chunk_size` argument instead of `num_returns`.")


def _next_batch(refs: list, chunk_size: int, yield_obj_refs: bool, wait_kwargs: dict):
    """(values or refs of up to ``chunk_size`` finished refs, the rest)."""
    ready, rest = zray.wait(refs, num_returns=min(chunk_size, len(refs)), **wait_kwargs)
    return (ready if yield_obj_refs else zray.get(ready)), rest


def as_completed(refs, *, chunk_size: int = DEFAULT_CHUNK_SIZE, yield_obj_refs: bool = False,
                 **wait_kwargs) -> Iterator[Any]:
    """Results of ``refs`` in batches of ``chunk_size`` as they become ready
    (``wait`` keywords such as ``timeout`` pass through)."""
    _check(chunk_size, wait_kwargs)
    refs = list(refs)
    while refs:
        results, refs = _next_batch(refs, chunk_size, yield_obj_refs, wait_kwargs)
        yield from results


def map_unordered(fn, items: Iterable, *, backpressure_size: Optional[int] = DEFAULT_BACKPRESSURE_SIZE,
                  chunk_size: int = DEFAULT_CHUNK_SIZE, yield_obj_refs: bool = False,
                  **wait_kwargs) -> Iterator[Any]:
    """``fn.remote(item)`` for each item, with at most ``backpressure_size``
    tasks in flight; results as they finish."""
    if backpressure_size is None:
        backpressure_size = float("inf")
    elif backpressure_size <= 0:
        raise ValueError("backpressure_size must be positive.")
    _check(chunk_size, wait_kwargs)
    refs: list = []
    for item in items:
        refs.append(fn.remote(item))
        if len(refs) >= backpressure_size:
            results, refs = _next_batch(refs, chunk_size, yield_obj_refs, wait_kwargs)
            yield from results
    yield from as_completed(refs, chunk_size=chunk_size, yield_obj_refs=yield_obj_refs,
                            **wait_kwargs)
