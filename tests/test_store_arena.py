"""Tests for zray.store.arena.ArenaAllocator: first fit, low-address reuse, coalescing."""

import random

import pytest

from zray.store.arena import ArenaAllocator

U = 4096  # default alignment unit


def test_allocations_are_aligned_and_rounded_up():
    arena = ArenaAllocator(16 * U)
    a = arena.allocate(1)
    b = arena.allocate(U + 1)
    c = arena.allocate(0)  # zero bytes still reserves one unit
    assert (a, b, c) == (0, U, 3 * U)
    assert arena.used == 4 * U
    assert arena.allocation_size(b) == 2 * U
    assert arena.num_allocations == 3
    assert arena.free_bytes == 12 * U


def test_capacity_rounds_down_to_alignment_and_validation():
    assert ArenaAllocator(10 * U + 100).capacity == 10 * U
    with pytest.raises(ValueError):
        ArenaAllocator(100)
    with pytest.raises(ValueError):
        ArenaAllocator(10 * U, alignment=3000)
    with pytest.raises(ValueError):
        ArenaAllocator(10 * U).allocate(-1)


def test_full_arena_returns_none_until_something_is_freed():
    arena = ArenaAllocator(4 * U)
    offsets = [arena.allocate(U) for _ in range(4)]
    assert arena.allocate(1) is None
    assert arena.largest_free_block == 0
    arena.free(offsets[2])
    assert arena.allocate(2 * U) is None
    assert arena.allocate(U) == offsets[2]


def test_fragmentation_and_coalescing_of_neighbours():
    arena = ArenaAllocator(8 * U)
    a, b, c, d = (arena.allocate(U) for _ in range(4))
    arena.free(a)
    arena.free(c)
    # Holes at 0 and 2U (one unit each) plus the tail [4U, 8U).
    assert arena.free_blocks() == [(0, U), (2 * U, U), (4 * U, 4 * U)]
    assert arena.allocate(2 * U) == 4 * U  # neither one-unit hole fits
    arena.free(b)  # merges with both neighbours into [0, 3U)
    assert arena.free_blocks() == [(0, 3 * U), (6 * U, 2 * U)]
    assert arena.largest_free_block == 3 * U
    assert arena.allocate(3 * U) == 0
    arena.free(d)
    arena.free(0)
    arena.free(4 * U)
    assert arena.free_blocks() == [(0, 8 * U)]
    assert arena.used == 0 and arena.num_allocations == 0


def test_freed_region_is_reused_at_the_same_low_address():
    arena = ArenaAllocator(1024 * U)
    big = arena.allocate(200 * U)
    other = arena.allocate(10 * U)
    arena.free(big)
    assert arena.allocate(200 * U) == big
    arena.free(big)
    # A smaller request also lands at the bottom of the freed region.
    assert arena.allocate(50 * U) == big
    assert other == 200 * U


def test_first_fit_prefers_lowest_address_over_best_fit():
    arena = ArenaAllocator(64 * U)
    blocks = [arena.allocate(size * U) for size in (4, 1, 2, 1)]
    arena.free(blocks[0])  # 4-unit hole at 0
    arena.free(blocks[2])  # 2-unit hole at 5U (a best fit would pick this)
    assert arena.allocate(2 * U) == 0


def test_first_fit_with_many_candidate_blocks():
    arena = ArenaAllocator(1000 * U)
    offsets = [arena.allocate(3 * U) for _ in range(300)]
    for off in offsets[::2]:  # 150 three-unit holes, the lowest at 0
        arena.free(off)
    assert arena.allocate(2 * U) == 0
    assert arena.allocate(3 * U) == offsets[2]
    assert arena.allocate(U) == 2 * U  # the rest of the first hole


def test_double_free_and_unknown_offset_raise_key_error():
    arena = ArenaAllocator(8 * U)
    off = arena.allocate(U)
    arena.free(off)
    with pytest.raises(KeyError, match="double free"):
        arena.free(off)
    with pytest.raises(KeyError):
        arena.free(12345)


def _lowest_fit(free_blocks, size):
    for off, block in free_blocks:
        if block >= size:
            return off
    return None


def test_random_workload_matches_first_fit_model():
    rng = random.Random(7)
    arena = ArenaAllocator(512 * U)
    live = {}
    for _ in range(3000):
        if live and rng.random() < 0.45:
            off = rng.choice(list(live))
            arena.free(off)
            del live[off]
        else:
            size = rng.choice([0, 1, U - 1, U, 3 * U + 5, 17 * U, 40 * U])
            rounded = max(U, -(-size // U) * U)
            expected = _lowest_fit(arena.free_blocks(), rounded)
            off = arena.allocate(size)
            assert off == expected
            if off is not None:
                live[off] = rounded
        # Invariants: free + allocated blocks tile [0, capacity) with no overlap,
        # and no two free blocks are adjacent (they would have been coalesced).
        regions = sorted(arena.free_blocks() + list(live.items()))
        pos = 0
        for off, size in regions:
            assert off == pos
            pos += size
        assert pos == arena.capacity
        free = arena.free_blocks()
        assert all(a + s < b for (a, s), (b, _) in zip(free, free[1:]))
        assert arena.used == sum(live.values())
        assert arena.largest_free_block == max((s for _, s in free), default=0)
