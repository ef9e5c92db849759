"""Which objects to spill so that one contiguous block of the arena is free.

Counting free bytes is not enough: a store whose free space is split between
live objects cannot place an object larger than its largest gap, however
many bytes are free in total.  So the raylet picks the cheapest window of the
arena (fewest bytes to spill) that is made only of free gaps and objects it
may spill, and is at least as large as the request.  Pure: no store access.
"""
from __future__ import annotations

from typing import NamedTuple, Optional


class Span(NamedTuple):
    offset: int
    end: int              # offset + the allocator's rounded size
    object_id: bytes
    movable: bool         # sealed, unread, not being deleted: it may be spilled


def choose(spans: list, capacity: int, needed: int) -> Optional[list]:
    """Object ids to spill (cheapest window first found), or None if no window
    of free gaps and movable objects reaches ``needed`` bytes."""
    spans = sorted(spans)
    best_cost, best = None, None
    run: list = []
    left_edge = 0
    for span in spans + [Span(capacity, capacity, b"", False)]:   # a wall at the end
        if span.movable:
            run.append(span)
            continue
        cost, chosen = _cheapest_in_run(run, left_edge, span.offset, needed)
        if chosen is not None and (best_cost is None or cost < best_cost):
            best_cost, best = cost, chosen
        run = []
        left_edge = span.end
    return best


def _cheapest_in_run(run: list, left_edge: int, right_edge: int, needed: int):
    """(bytes, ids) of the cheapest run[a..b] whose removal frees >= needed
    contiguous bytes between the walls at left_edge and right_edge."""
    if not run or right_edge - left_edge < needed:
        return None, None
    best_cost, best = None, None
    a = 0
    cost = 0
    for b, span in enumerate(run):
        cost += span.end - span.offset
        # Drop objects from the left while the window without them still fits.
        while a < b and _region(run, a + 1, b, left_edge, right_edge) >= needed:
            cost -= run[a].end - run[a].offset
            a += 1
        if _region(run, a, b, left_edge, right_edge) >= needed and (
                best_cost is None or cost < best_cost):
            best_cost, best = cost, [s.object_id for s in run[a:b + 1]]
    return best_cost, best


def _region(run: list, a: int, b: int, left_edge: int, right_edge: int) -> int:
    """Contiguous bytes free once run[a..b] are gone."""
    start = run[a - 1].end if a > 0 else left_edge
    end = run[b + 1].offset if b + 1 < len(run) else right_edge
    return end - start
