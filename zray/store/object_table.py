"""The raylet's state machine for the objects held in its shared-memory arena.

Pure bookkeeping over an ArenaAllocator: no sockets, no memory access.  Lifecycle::

    create() -> CREATED --seal()--> SEALED --delete()--> freed
                   |                             (or pending delete while
                   +--abort()--> freed            readers still hold pins)

A reader pin (pin_reader / release_reader) is what a `get` holds while any Python
view of the object is alive; the arena bytes are not reused until every pin is
released, so delete() with pins outstanding only marks the object pending-delete.
A pending-delete object is invisible to new readers (pin_reader returns None,
contains() is False) but its id stays reserved until it is actually freed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterator

from zray.store.arena import ArenaAllocator
from zray.store.errors import ObjectExistsError, ObjectStateError, UnknownObjectError


class ObjectState(enum.Enum):
    CREATED = "created"  # reserved; the creator is writing it
    SEALED = "sealed"  # immutable and readable


@dataclass(frozen=True)
class ObjectInfo:
    size: int  # encoded object size in bytes (the allocation may be larger)
    offset: int
    state: ObjectState
    readers: int
    pending_delete: bool


class _Entry:
    __slots__ = ("offset", "size", "state", "readers", "pending_delete")

    def __init__(self, offset: int, size: int) -> None:
        self.offset = offset
        self.size = size
        self.state = ObjectState.CREATED
        self.readers = 0
        self.pending_delete = False


class ObjectTable:
    """Objects in one arena, keyed by object id (bytes)."""

    def __init__(self, allocator: ArenaAllocator) -> None:
        self._allocator = allocator
        self._entries: dict[bytes, _Entry] = {}
        self._num_pinned = 0  # objects with readers > 0

    def _get(self, object_id: bytes, op: str) -> _Entry:
        entry = self._entries.get(object_id)
        if entry is None:
            raise UnknownObjectError(f"{op}: object {object_id.hex()} is not in the store")
        return entry

    def _free(self, object_id: bytes, entry: _Entry) -> None:
        del self._entries[object_id]
        self._allocator.free(entry.offset)

    def create(self, object_id: bytes, size: int) -> int | None:
        """Reserve size bytes for a new object; return its offset, or None if no room now."""
        if object_id in self._entries:
            raise ObjectExistsError(f"create: object {object_id.hex()} already exists")
        offset = self._allocator.allocate(size)
        if offset is None:
            return None
        self._entries[object_id] = _Entry(offset, size)
        return offset

    def seal(self, object_id: bytes) -> None:
        """Mark a created object complete and readable."""
        entry = self._get(object_id, "seal")
        if entry.state is not ObjectState.CREATED:
            raise ObjectStateError(f"seal: object {object_id.hex()} is already sealed")
        entry.state = ObjectState.SEALED
        if entry.pending_delete:  # deleted while being written: nobody can read it
            self._free(object_id, entry)

    def abort(self, object_id: bytes) -> None:
        """The creator failed before sealing: free the reservation."""
        entry = self._get(object_id, "abort")
        if entry.state is not ObjectState.CREATED:
            raise ObjectStateError(f"abort: object {object_id.hex()} is sealed; use delete")
        self._free(object_id, entry)

    def pin_reader(self, object_id: bytes) -> tuple[int, int] | None:
        """Pin a sealed object for a reader; return (offset, size), or None if not readable."""
        entry = self._entries.get(object_id)
        if entry is None or entry.state is not ObjectState.SEALED or entry.pending_delete:
            return None
        if entry.readers == 0:
            self._num_pinned += 1
        entry.readers += 1
        return entry.offset, entry.size

    def release_reader(self, object_id: bytes) -> None:
        """Drop one reader pin; frees the object if it was pending delete and this was the last."""
        entry = self._get(object_id, "release_reader")
        if entry.readers == 0:
            raise UnknownObjectError(
                f"release_reader: object {object_id.hex()} has no reader pins to release"
            )
        entry.readers -= 1
        if entry.readers == 0:
            self._num_pinned -= 1
            if entry.pending_delete:
                self._free(object_id, entry)

    def delete(self, object_id: bytes) -> None:
        """Free the object now, or once its readers (or its creator) are done. Unknown id: no-op."""
        entry = self._entries.get(object_id)
        if entry is None:
            return
        if entry.readers == 0 and entry.state is ObjectState.SEALED:
            self._free(object_id, entry)
        else:
            # Readers still hold views into these bytes, or the creator is still
            # writing them: reusing the region now would corrupt what they see.
            entry.pending_delete = True

    def contains(self, object_id: bytes) -> bool:
        """True if the object is in the store and not pending delete (any state)."""
        entry = self._entries.get(object_id)
        return entry is not None and not entry.pending_delete

    def is_sealed(self, object_id: bytes) -> bool:
        entry = self._entries.get(object_id)
        return entry is not None and not entry.pending_delete and entry.state is ObjectState.SEALED

    def allocated_size(self, object_id: bytes) -> int:
        """The bytes its allocation spans in the arena (its size, rounded up)."""
        return self._allocator.allocated_size(self._get(object_id, "allocated_size").offset)

    def info(self, object_id: bytes) -> ObjectInfo:
        """Size, offset, state, reader count and pending-delete flag (UnknownObjectError if absent)."""
        entry = self._get(object_id, "info")
        return ObjectInfo(entry.size, entry.offset, entry.state, entry.readers, entry.pending_delete)

    def objects(self) -> Iterator[tuple[bytes, ObjectInfo]]:
        """(object_id, ObjectInfo) for every object, including pending-delete ones."""
        for object_id, e in list(self._entries.items()):
            yield object_id, ObjectInfo(e.size, e.offset, e.state, e.readers, e.pending_delete)

    def used_fraction(self) -> float:
        alloc = self._allocator
        return alloc.used / alloc.capacity if alloc.capacity else 0.0

    def stats(self) -> dict:
        alloc = self._allocator
        return {
            "used_bytes": alloc.used,
            "capacity": alloc.capacity,
            "num_objects": len(self._entries),
            "num_pinned_by_readers": self._num_pinned,
            "free_bytes": alloc.free_bytes,
            "largest_free_block": alloc.largest_free_block,
        }

    def __len__(self) -> int:
        return len(self._entries)
