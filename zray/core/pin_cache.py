"""Store pins a process keeps for a moment after its last view of an object
died, so getting the same object again skips the raylet round trip
(~190 us, the whole cost of a zero-copy get of any size).

Pure bookkeeping under the core worker's lock.  A cached pin is released
after LINGER_S (on the IO loop's tick, so at most ~2 ticks later), or at
once when this process frees the object; meanwhile the raylet cannot spill
that one object, which only delays a waiting create or restore by as much.
"""
from __future__ import annotations

LINGER_S = 0.1


class PinCache:
    def __init__(self):
        self._pins: dict = {}     # object id -> (offset, size, release deadline)

    def take(self, object_id: bytes):
        """(offset, size) of a cached pin, now owned by the caller; or None."""
        pin = self._pins.pop(object_id, None)
        return None if pin is None else pin[:2]

    def keep(self, object_id: bytes, offset: int, size: int, now: float) -> bool:
        """Cache a pin whose last view died; False if one is cached already
        (the caller releases this one)."""
        if object_id in self._pins:
            return False
        self._pins[object_id] = (offset, size, now + LINGER_S)
        return True

    def expired(self, now: float) -> list:
        """Object ids whose pins are due for release (removed from the cache)."""
        if not self._pins:
            return []
        due = [oid for oid, pin in self._pins.items() if pin[2] <= now]
        for oid in due:
            del self._pins[oid]
        return due

    def drop(self, object_ids) -> list:
        """The cached ones among ``object_ids`` (removed from the cache)."""
        pins = self._pins
        return [oid for oid in object_ids if pins.pop(oid, None) is not None]

    def __len__(self) -> int:
        return len(self._pins)
