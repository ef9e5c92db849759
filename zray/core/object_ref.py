"""ObjectRef: a handle to an immutable object, counted by its owner.

Creating and deleting refs only appends to the process's ref-op queue (a
deque is thread-safe and __del__ may run in any thread or inside GC); the
core worker applies the queue under its lock.
"""
from __future__ import annotations

import asyncio
import contextvars

from .. import serialization
from ..sockets.messages import ReturnKind
from . import process_state


_current_task = process_state.current_task
_IN_STORE = int(ReturnKind.IN_STORE)
# get() collects the refs it unpickles here, to register with their owners.
receiving = contextvars.ContextVar("zray_receiving", default=None)


def _rebuild_ref(object_id: bytes, owner: tuple, location=None):
    """Unpickling a ref (in a task arg or inside an object) makes a borrower:
    note it so the owner can be told (see ownership.py)."""
    sink = receiving.get()
    if sink is None:
        ctx = _current_task.get()
        if ctx is not None:
            sink = ctx.received
    if sink is not None:
        sink.append((object_id, owner))
    ref = ObjectRef(object_id, owner)
    ref._location = location
    return ref


class ObjectRef:
    __slots__ = ("_id", "_owner", "_location", "__weakref__")

    def __init__(self, object_id: bytes, owner: tuple, _count: bool = True):
        self._id = object_id
        self._owner = owner          # (owner worker_id, owner endpoint)
        # (node_id, size) of a shared-memory object, when its owner said so in
        # the pickle: the borrower then reads the store without asking the owner.
        self._location = None
        if _count:
            worker = process_state.worker
            if worker is not None:
                worker.ref_ops.append((object_id, owner, 1))

    def __del__(self):
        worker = process_state.worker
        if worker is not None:
            try:
                worker.ref_ops.append((self._id, self._owner, -1))
            except Exception:
                pass

    def __reduce__(self):
        sink = serialization.contained_refs_sink()
        if sink is not None:
            sink.append(self)
        worker = process_state.worker
        if worker is not None:
            entry = worker.refs.objects.get(self._id)
            if entry is not None and entry.owned and entry.kind == _IN_STORE:
                # Ray's inline_object_status_in_refs: the owner says where the
                # object lives, so a task reading it does not wait on a busy
                # owner's reply (a wait that lends its CPU and starts workers).
                return _rebuild_ref, (self._id, self._owner, entry.data)
        return _rebuild_ref, (self._id, self._owner)

    def __copy__(self):
        return ObjectRef(self._id, self._owner)

    def __deepcopy__(self, memo):
        return ObjectRef(self._id, self._owner)

    # Ray's accessors
    def binary(self) -> bytes:
        return self._id

    def hex(self) -> str:
        return self._id.hex()

    def task_id(self):
        from ..ids import TaskID
        return TaskID(self._id[:16])

    def job_id(self):
        from ..ids import JobID
        return JobID(self._id[12:16])

    def owner_address(self):
        return self._owner[1]

    def is_nil(self) -> bool:
        return self._id == b"\xff" * len(self._id)

    def __hash__(self):
        return hash(self._id)

    def __eq__(self, other):
        return type(other) is ObjectRef and other._id == self._id

    def __repr__(self):
        return f"ObjectRef({self._id.hex()})"

    def future(self):
        """A concurrent.futures.Future resolved with the object's value."""
        return process_state.require_worker().future_of(self)

    def __await__(self):
        return asyncio.wrap_future(self.future()).__await__()

    def as_future(self):
        return asyncio.wrap_future(self.future())
