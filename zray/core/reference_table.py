"""Ownership and reference counts for every object this process knows.

One entry per ObjectID holding: whether this process owns it, local ref
count (ObjectRef instances alive here), submitted-task count (pending tasks
using it as an argument), readiness and value (inline bytes, store location
or error), and callbacks to run when it becomes ready.

Pure bookkeeping: no sockets.  The core worker calls it with its lock held
and performs the actions it returns (free store copies, reply to waiters).
"""
from __future__ import annotations

import pickle
from collections import deque

from ..ids import is_actor_handle_object
from ..sockets.messages import ReturnKind

INLINE = int(ReturnKind.INLINE)
IN_STORE = int(ReturnKind.IN_STORE)
ERROR = int(ReturnKind.ERROR)
_NONE_PICKLE = pickle.dumps(None, 5)


class Entry:
    __slots__ = ("owned", "refs", "task_refs", "ready", "kind", "data",
                 "callbacks", "owner", "contained", "fetching", "pinned_reason", "borrowers",
                 "reported")

    def __init__(self, owned: bool, owner, refs: int = 0):
        self.owned = owned
        self.owner = owner            # (worker_id, endpoint)
        self.refs = refs
        self.task_refs = 0
        self.ready = False
        self.kind = None
        self.data = None
        self.callbacks = None
        self.contained = None         # ObjectRefs kept alive by this object's value
        self.fetching = False         # borrowed: a status request is out
        self.pinned_reason = None     # e.g. "captured" for refs in a function definition
        self.borrowers = None         # owned: {worker_id: count} of workers still holding it
        self.reported = 0             # borrowed: times our owner counted us as a borrower


class ReferenceTable:
    def __init__(self):
        self.objects: dict = {}
        self.ref_ops: deque = deque()   # (object_id, owner, +1/-1), appended from any thread
        self.freed_store_objects: list = []   # owned IN_STORE objects to delete in stores
        self.borrower_releases: list = []     # (object_id, owner): tell the owner we let go
        self.actor_handles: dict = {}         # owned handle object id -> actor id (ids.py)
        self.freed_actor_handles: list = []   # actor ids whose last handle went away
        self.errors_stored = 0                # ERROR values recorded: get() of a list fails fast

    def add_owned(self, object_id: bytes, owner) -> Entry:
        entry = Entry(True, owner, refs=1)
        self.objects[object_id] = entry
        return entry

    def add_actor_handle(self, object_id: bytes, actor_id: bytes, owner) -> None:
        """Own the object counting ``actor_id``'s handles; its first handle's
        ObjectRef is created uncounted (the +1 is this entry's)."""
        entry = self.add_owned(object_id, owner)
        entry.ready = True
        entry.kind, entry.data = INLINE, _NONE_PICKLE
        self.actor_handles[object_id] = actor_id

    def take_freed_actor_handles(self) -> list:
        freed = self.freed_actor_handles
        self.freed_actor_handles = []
        return freed

    def apply_ref_ops(self) -> None:
        ops = self.ref_ops
        objects = self.objects
        while ops:
            object_id, owner, delta = ops.popleft()
            entry = objects.get(object_id)
            if entry is None:
                if delta <= 0:
                    continue
                entry = objects[object_id] = Entry(False, owner)
            entry.refs += delta
            if entry.refs <= 0 and entry.task_refs <= 0:
                self._maybe_free(object_id, entry)

    def entry_for_ref(self, object_id: bytes, owner) -> Entry:
        """Entry for a ref held by the caller (its +1 may still be queued)."""
        entry = self.objects.get(object_id)
        if entry is None:
            entry = self.objects[object_id] = Entry(False, owner)
        return entry

    def add_task_ref(self, entry: Entry) -> None:
        entry.task_refs += 1

    def remove_task_ref(self, object_id: bytes) -> None:
        entry = self.objects.get(object_id)
        if entry is None:
            return
        entry.task_refs -= 1
        if entry.refs <= 0 and entry.task_refs <= 0:
            self.apply_ref_ops()
            if entry.refs <= 0 and entry.task_refs <= 0:
                self._maybe_free(object_id, entry)

    def set_ready(self, object_id: bytes, kind: int, data) -> list:
        """Record the value; returns the callbacks to run (with the lock held)."""
        entry = self.objects.get(object_id)
        if entry is None or entry.ready:
            return ()
        entry.ready = True
        entry.kind = kind
        entry.data = data
        if kind == ERROR:
            self.errors_stored += 1
        callbacks = entry.callbacks or ()
        entry.callbacks = None
        if entry.owned and entry.refs <= 0 and entry.task_refs <= 0 and not callbacks:
            self.apply_ref_ops()
            if entry.refs <= 0 and entry.task_refs <= 0:
                self._maybe_free(object_id, entry)
        return callbacks

    def on_ready(self, entry: Entry, callback) -> None:
        if entry.callbacks is None:
            entry.callbacks = [callback]
        else:
            entry.callbacks.append(callback)

    def _maybe_free(self, object_id: bytes, entry: Entry) -> None:
        if entry.owned:
            if not entry.ready or entry.pinned_reason or entry.callbacks or entry.borrowers:
                return
            if entry.kind == IN_STORE:
                self.freed_store_objects.append(object_id)
            elif self.actor_handles:
                actor_id = self.actor_handles.pop(object_id, None)
                if actor_id is not None:
                    self.freed_actor_handles.append(actor_id)
            # Drop the refs this value holds now, so their releases join the
            # ops being applied (the caller may still hold `entry`).
            entry.contained = None
        elif entry.pinned_reason:
            return   # captured in a definition: pinned for the job
        elif entry.reported:
            self.borrower_releases.append((object_id, entry.owner, entry.reported))
        del self.objects[object_id]

    # ----------------------------------------------------------- borrowers ---
    def add_borrower(self, object_id: bytes, worker_id: bytes) -> None:
        entry = self.objects.get(object_id)
        if entry is None or not entry.owned:
            return
        self._count_borrower(entry, worker_id, 1)
        self._free_if_unused(object_id, entry)   # it may cancel an early removal

    def remove_borrower(self, object_id: bytes, worker_id: bytes, count: int = 1) -> None:
        entry = self.objects.get(object_id)
        if entry is None or not entry.owned:
            return
        # A removal can overtake the message that added the borrower (another
        # connection): counts may go negative and still block freeing.
        self._count_borrower(entry, worker_id, -count)
        self._free_if_unused(object_id, entry)

    def borrower_died(self, worker_id: bytes) -> None:
        for object_id, entry in list(self.objects.items()):
            if entry.borrowers and worker_id in entry.borrowers:
                del entry.borrowers[worker_id]
                self._free_if_unused(object_id, entry)

    @staticmethod
    def _count_borrower(entry: Entry, worker_id: bytes, delta: int) -> None:
        borrowers = entry.borrowers
        if borrowers is None:
            borrowers = entry.borrowers = {}
        count = borrowers.get(worker_id, 0) + delta
        if count:
            borrowers[worker_id] = count
        else:
            borrowers.pop(worker_id, None)

    def _free_if_unused(self, object_id: bytes, entry: Entry) -> None:
        if entry.refs <= 0 and entry.task_refs <= 0 and not entry.borrowers:
            self.apply_ref_ops()
            if entry.refs <= 0 and entry.task_refs <= 0 and object_id in self.objects:
                self._maybe_free(object_id, entry)

    def take_borrower_releases(self) -> list:
        """[(object id, owner, registrations)] of borrowed objects we let go."""
        releases = self.borrower_releases
        self.borrower_releases = []
        return releases

    def take_freed_store_objects(self) -> list:
        freed = self.freed_store_objects
        self.freed_store_objects = []
        return freed

    def stats(self) -> dict:
        objects = [e for oid, e in self.objects.items() if not is_actor_handle_object(oid)]
        owned = sum(1 for e in objects if e.owned)
        return {"num_objects": len(objects), "num_owned": owned,
                "num_borrowed": len(objects) - owned}
