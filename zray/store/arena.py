"""First-fit allocator over the byte range [0, capacity) of the shared-memory arena.

Pure bookkeeping (no memory is touched).  Free blocks are kept in an address-ordered
list (for neighbour coalescing on free, O(log n) via bisect) and in a (size, offset)
ordered index (for an O(log n) "does anything fit" check and for finding the
candidates that fit).  Allocation is first fit: the LOWEST-addressed free block large
enough wins, and the allocation is carved from that block's low end.  Preferring low
addresses keeps the working set compact, so a region that was freed and allocated
again lands on pages the writer processes have already faulted in.
"""

from __future__ import annotations

from bisect import bisect_left, insort

# When at most this many free blocks are large enough, pick the lowest-addressed
# among them directly; otherwise walk blocks in address order (with many fitting
# blocks, a fitting one comes early in that walk).
_FEW_CANDIDATES = 32


class ArenaAllocator:
    """First-fit, low-address-preferring allocator with coalescing on free."""

    def __init__(self, capacity: int, alignment: int = 4096) -> None:
        if alignment <= 0 or alignment & (alignment - 1):
            raise ValueError(f"alignment must be a positive power of two, got {alignment}")
        if capacity < alignment:
            raise ValueError(f"capacity {capacity} is smaller than one alignment unit {alignment}")
        # The tail that cannot hold a whole alignment unit is never handed out.
        self._capacity = capacity - capacity % alignment
        self._alignment = alignment
        self._free_starts: list[int] = [0]  # address order
        self._free_size_at: dict[int, int] = {0: self._capacity}
        self._free_by_size: list[tuple[int, int]] = [(self._capacity, 0)]  # (size, offset)
        self._allocated: dict[int, int] = {}  # offset -> rounded size
        self._used = 0

    # -- free-block bookkeeping -------------------------------------------------
    def _add_free(self, offset: int, size: int) -> None:
        insort(self._free_starts, offset)
        self._free_size_at[offset] = size
        insort(self._free_by_size, (size, offset))

    def _remove_free(self, offset: int) -> int:
        size = self._free_size_at.pop(offset)
        del self._free_starts[bisect_left(self._free_starts, offset)]
        del self._free_by_size[bisect_left(self._free_by_size, (size, offset))]
        return size

    def _first_fit(self, size: int) -> int | None:
        by_size = self._free_by_size
        first_candidate = bisect_left(by_size, (size, -1))
        n_candidates = len(by_size) - first_candidate
        if n_candidates == 0:
            return None
        if n_candidates <= _FEW_CANDIDATES:
            return min(offset for _, offset in by_size[first_candidate:])
        size_at = self._free_size_at
        for offset in self._free_starts:
            if size_at[offset] >= size:
                return offset
        return None  # unreachable: a candidate exists

    # -- public API ---------------------------------------------------------------
    def allocate(self, size: int) -> int | None:
        """Reserve size bytes (rounded up to the alignment; 0 reserves one unit).

        Returns the offset of the reservation, or None if no free block is large enough.
        """
        if size < 0:
            raise ValueError(f"cannot allocate a negative size ({size})")
        align = self._alignment
        rounded = max(align, (size + align - 1) // align * align)
        offset = self._first_fit(rounded)
        if offset is None:
            return None
        block = self._remove_free(offset)
        if block > rounded:
            self._add_free(offset + rounded, block - rounded)
        self._allocated[offset] = rounded
        self._used += rounded
        return offset

    def allocated_size(self, offset: int) -> int:
        """The rounded size of the allocation starting at ``offset``."""
        return self._allocated[offset]

    def free(self, offset: int) -> None:
        """Return the reservation at offset; merges it with free neighbours."""
        size = self._allocated.pop(offset, None)
        if size is None:
            raise KeyError(
                f"free({offset}): no allocation starts at this offset "
                "(double free or an offset allocate() never returned)"
            )
        self._used -= size
        starts = self._free_starts
        i = bisect_left(starts, offset)
        # Merge with the following free block if it starts where this one ends.
        if i < len(starts) and starts[i] == offset + size:
            size += self._remove_free(starts[i])
        # Merge with the preceding free block if it ends where this one starts.
        if i > 0:
            prev = starts[i - 1]
            if prev + self._free_size_at[prev] == offset:
                size += self._remove_free(prev)
                offset = prev
        self._add_free(offset, size)

    def allocation_size(self, offset: int) -> int:
        """Rounded size of the live allocation at offset (KeyError if none)."""
        try:
            return self._allocated[offset]
        except KeyError:
            raise KeyError(f"no allocation starts at offset {offset}") from None

    def free_blocks(self) -> list[tuple[int, int]]:
        """(offset, size) of every free block in address order (for debugging and tests)."""
        return [(o, self._free_size_at[o]) for o in self._free_starts]

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def alignment(self) -> int:
        return self._alignment

    @property
    def used(self) -> int:
        return self._used

    @property
    def free_bytes(self) -> int:
        return self._capacity - self._used

    @property
    def largest_free_block(self) -> int:
        return self._free_by_size[-1][0] if self._free_by_size else 0

    @property
    def num_allocations(self) -> int:
        return len(self._allocated)

    def __repr__(self) -> str:
        return (
            f"ArenaAllocator(capacity={self._capacity}, used={self._used}, "
            f"allocations={len(self._allocated)}, free_blocks={len(self._free_starts)})"
        )
