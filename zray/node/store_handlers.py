"""The raylet's object-store requests (mixin of Raylet: uses its ``store``
ObjectTable, ``clients`` table and ``send``).

Create reserves space in the arena.  Under pressure the raylet first drops
arena copies that also have a spilled copy (restored objects: free), then
spills sealed, unread objects (oldest first) to the host's LMDB spill store
on the spill thread; the create waits in a FIFO served whenever space is
freed, and only after ``--object-store-full-timeout-s`` is answered with
ObjectStoreFullError's message naming the sizes (and a spill failure, if
any).  Seal makes an object readable; Get pins it for a reader (pins are
tracked per client so a client that dies releases them) and restores a
spilled object first, waiting like a create when there is no room; Release
unpins; Free deletes every copy (the arena one deferred while read).
"""
from __future__ import annotations

import logging
import os
import time

import zmq

from ..sockets import messages as m
from ..store import ObjectState, shm
from ..store.spill import SpillStore
from . import spill_plan
from .spill_worker import SpillWorker

SPILL_RETRY_S = 1.0    # after a failed spill (disk full), wait this long before the next

ORPHAN_GRACE_S = 1.0   # unsealed objects of a client that went away are freed after this
log = logging.getLogger("zray.raylet")


class StoreHandlers:
    def on_create_object(self, identity, msg) -> None:
        capacity = self.store.stats()["capacity"]
        if msg.size > capacity:
            self.send(identity, m.CreateObjectReply(msg.request_id, -1, m.CREATE_NEVER_FITS, (
                f"object of {msg.size} bytes can never fit: the object store holds "
                f"{capacity} bytes (set object_store_memory higher)")))
            return
        if self.pending_creates or self.pending_restores or not self._try_create(identity, msg):
            deadline = time.monotonic() + self.args.object_store_full_timeout_s
            self.pending_creates.append((identity, msg, deadline))

    def _try_create(self, identity, msg) -> bool:
        """Reply to a create if it can be decided now; False if it must wait."""
        object_id = msg.object_id
        if self.store.is_sealed(object_id):
            # A retried task writing a return (or generator item) that its first
            # attempt already sealed before dying: keep it, as Ray does.
            size = self.store.info(object_id).size
            self.send(identity, m.CreateObjectReply(msg.request_id, -1, m.CREATE_EXISTS, "", size))
            return True
        creator = self.creators.get(object_id)
        if creator is not None and creator not in self.clients:
            self._abort_unsealed(object_id)   # its writer died mid-write (seal never came)
        try:
            offset = self.store.create(msg.object_id, msg.size)
        except Exception as exc:
            self.send(identity, m.CreateObjectReply(msg.request_id, -1, m.CREATE_FAILED, str(exc)))
            return True
        if offset is None:
            if not self._make_room(msg.size):
                return False
            offset = self.store.create(msg.object_id, msg.size)
            if offset is None:
                return False
        self.creators[object_id] = identity
        self.send(identity, m.CreateObjectReply(msg.request_id, offset, m.CREATE_OK, ""))
        return True

    def _abort_unsealed(self, object_id: bytes) -> None:
        self.creators.pop(object_id, None)
        try:
            self.store.abort(object_id)
        except Exception as exc:   # sealed or freed meanwhile
            log.debug("abort of %s skipped: %s", object_id.hex(), exc)

    def abort_creations_of(self, identity) -> None:
        """A client went away: objects it created but never sealed are freed,
        after a grace period.  Its death reaches us through the fork server's
        pipe, so a seal it sent just before dying may still be on its way."""
        if any(who == identity for who in self.creators.values()):
            self.orphaned_creations.append((time.monotonic() + ORPHAN_GRACE_S, identity))

    def abort_orphaned_creations(self, now: float) -> None:
        while self.orphaned_creations and self.orphaned_creations[0][0] <= now:
            _, identity = self.orphaned_creations.pop(0)
            for object_id in [oid for oid, who in self.creators.items() if who == identity]:
                self._abort_unsealed(object_id)

    # ------------------------------------------------------------ spilling ---
    def _arena_view(self, offset: int, size: int):
        if self._arena_rw is None:
            self._arena_rw = shm.ArenaWriter(self.arena_path, self.store.stats()["capacity"],
                                             populate=False)
        return self._arena_rw.view(offset, size)

    def _spill_store(self) -> SpillStore:
        if self._spill is None:
            if self.args.spill_dir:
                path = os.path.join(self.args.spill_dir,
                                    "zray-spill-" + os.path.basename(self.session_dir))
            else:
                path = os.path.join(self.session_dir, "spill")
            self._spill = SpillStore(path)
            self.spill_worker = SpillWorker(self._spill.put, "zray-spill")
            self.poller.register(self.spill_worker.wake_r, zmq.POLLIN)
            self.restore_worker = SpillWorker(self._spill.read_into, "zray-restore")
            self.poller.register(self.restore_worker.wake_r, zmq.POLLIN)
        return self._spill

    def _make_room(self, needed: int) -> bool:
        """True if a block of ``needed`` bytes is free now.  Otherwise drop
        arena copies that are also spilled, then start spilling, on the spill
        thread, the sealed objects nobody reads that fill the cheapest window
        of the arena that would then be one free block of ``needed`` bytes
        (spill_plan: free bytes in separate gaps do not help); the waiting
        request is served when they finish."""
        store = self.store
        stats = store.stats()
        if stats["largest_free_block"] >= needed:
            return True
        spilled = self.spilled
        if spilled:
            for object_id, info in list(store.objects()):
                if object_id in spilled and info.state == ObjectState.SEALED and not info.readers:
                    store.delete(object_id)
                    if store.stats()["largest_free_block"] >= needed:
                        return True
            stats = store.stats()
        failure = self.spill_failure
        if failure is not None and time.monotonic() - failure[0] < SPILL_RETRY_S:
            return False   # the spill store just failed (disk full?): do not spin on it
        spans, infos = [], {}
        for object_id, info in store.objects():
            movable = object_id in self.spilling or (
                info.state == ObjectState.SEALED and not info.readers and not info.pending_delete)
            spans.append(spill_plan.Span(info.offset, info.offset + store.allocated_size(object_id),
                                         object_id, movable))
            infos[object_id] = info
        chosen = spill_plan.choose(spans, stats["capacity"], needed)
        for object_id in chosen or ():
            if object_id in self.spilling:
                continue      # already on its way out
            info = infos[object_id]
            self._spill_store()
            self.spilling[object_id] = info.size
            self.spill_worker.submit(object_id, self._arena_view(info.offset, info.size))
        return False

    def on_spills_done(self) -> None:
        for object_id, ok in self.spill_worker.take_done():
            size = self.spilling.pop(object_id)
            if ok is not True:
                self.spill_failure = (time.monotonic(), ok)
                continue
            self.spill_failure = None
            info = self.store.info(object_id) if self.store.contains(object_id) else None
            if info is not None and not info.readers:
                self.store.delete(object_id)          # the arena copy goes
                self.spilled[object_id] = size
                self.spill_counts["spilled_objects_total"] += 1
                self.spill_counts["spilled_bytes_total"] += size
            else:                                      # freed, or read meanwhile
                self.spill_worker.submit_delete(self._spill, object_id)
        self.serve_waiting()

    def _start_restore(self, object_id: bytes) -> bool:
        """Reserve arena space for a spilled object and have the restore thread
        read it in; False if there is no room yet.  The spilled copy stays
        until the object is freed, so evicting it again costs nothing (as Ray)."""
        size = self.spilled[object_id]
        if not self._make_room(size):
            return False
        offset = self.store.create(object_id, size)
        if offset is None:
            return False
        self.restoring[object_id] = size
        self.restore_worker.submit(object_id, self._arena_view(offset, size))
        return True

    def on_restores_done(self) -> None:
        for object_id, ok in self.restore_worker.take_done():
            size = self.restoring.pop(object_id)
            if ok is True:
                self.store.seal(object_id)   # freed meanwhile: seal frees it
                self.spill_counts["restored_objects_total"] += 1
                self.spill_counts["restored_bytes_total"] += size
            else:
                log.warning("restore of %s failed: %s", object_id.hex(), ok)
                if self.store.contains(object_id):
                    self.store.abort(object_id)
                else:
                    self.store.seal(object_id)
                self.restore_failures[object_id] = ok
        self.serve_waiting()

    def serve_waiting(self) -> None:
        """Space may be free or restores finished: serve waiting gets of
        spilled objects, then creates, in arrival order."""
        if self.pending_restores:
            self._serve_waiting_restores()
        pending = self.pending_creates
        while pending:
            identity, msg, _ = pending[0]
            if not self._try_create(identity, msg):
                return
            pending.popleft()

    def _serve_waiting_restores(self) -> None:
        keep = type(self.pending_restores)()
        room = True      # a restore that found no room blocks later ones (FIFO)
        for item in self.pending_restores:
            identity, msg, _ = item
            object_id = msg.object_id
            if object_id in self.restoring:
                keep.append(item)
            elif object_id in self.spilled and not self.store.contains(object_id):
                room = room and self._start_restore(object_id)
                keep.append(item)
            else:
                self._serve_get(identity, msg)
        self.pending_restores = keep

    def expire_waiting(self, now: float) -> None:
        """Answer waits that passed their deadline with ObjectStoreFullError's message."""
        if not self.pending_creates and not self.pending_restores:
            return
        failure = self.spill_failure
        if failure is not None and now - failure[0] >= SPILL_RETRY_S and not self.spilling:
            self.serve_waiting()      # try spilling again (disk space may be back)
        why = ""
        if self.spill_failure is not None:
            why = f"; spilling to {self._spill.path} failed: {self.spill_failure[1]}"
        timeout = self.args.object_store_full_timeout_s
        keep = type(self.pending_restores)()
        for identity, msg, deadline in self.pending_restores:
            if now < deadline or msg.object_id in self.restoring:
                keep.append((identity, msg, deadline))
                continue
            size = self.spilled.get(msg.object_id, 0)
            self.send(identity, m.GetObjectLocalReply(msg.request_id, msg.object_id, -2, size))
        self.pending_restores = keep
        keep = type(self.pending_creates)()
        for identity, msg, deadline in self.pending_creates:
            if now < deadline:
                keep.append((identity, msg, deadline))
                continue
            stats = self.store.stats()
            self.send(identity, m.CreateObjectReply(msg.request_id, -1, m.CREATE_NEVER_FITS, (
                f"object store is full: cannot allocate {msg.size} bytes after waiting "
                f"{timeout:g}s (capacity {stats['capacity']}, used {stats['used_bytes']} by "
                f"{stats['num_objects']} objects, largest free block "
                f"{stats['largest_free_block']}){why}")))
        self.pending_creates = keep

    def drop_waiting(self, identity) -> None:
        """A client went away: forget its waiting requests."""
        self.pending_creates = type(self.pending_creates)(
            item for item in self.pending_creates if item[0] != identity)
        self.pending_restores = type(self.pending_restores)(
            item for item in self.pending_restores if item[0] != identity)

    def on_seal_object(self, identity, msg) -> None:
        self.creators.pop(msg.object_id, None)
        try:
            self.store.seal(msg.object_id)
        except Exception as exc:
            log.warning("seal of %s failed: %s", msg.object_id.hex(), exc)

    def on_get_object(self, identity, msg) -> None:
        object_id = msg.object_id
        if object_id in self.restoring or (object_id in self.spilled
                                           and not self.store.contains(object_id)):
            # Read back on the restore thread; the get is answered when it is in.
            deadline = time.monotonic() + self.args.object_store_full_timeout_s
            self.pending_restores.append((identity, msg, deadline))
            self._serve_waiting_restores()
            return
        self._serve_get(identity, msg)

    def _serve_get(self, identity, msg) -> None:
        failure = self.restore_failures.pop(msg.object_id, None)
        if failure is not None:
            self.send(identity, m.GetObjectLocalReply(msg.request_id, msg.object_id, -3, 0))
            log.warning("get of %s: its restore failed: %s", msg.object_id.hex(), failure)
            return
        pinned = self.store.pin_reader(msg.object_id)
        if pinned is None:
            self.send(identity, m.GetObjectLocalReply(msg.request_id, msg.object_id, -1, 0))
            return
        client = self.clients.get(identity)
        if client is not None:
            pins = client["pins"]
            pins[msg.object_id] = pins.get(msg.object_id, 0) + 1
        offset, size = pinned
        self.send(identity, m.GetObjectLocalReply(msg.request_id, msg.object_id, offset, size))

    def on_release_object(self, identity, msg) -> None:
        client = self.clients.get(identity)
        if client is not None:
            pins = client["pins"]
            count = pins.get(msg.object_id, 0)
            if count <= 0:
                return
            if count == 1:
                del pins[msg.object_id]
            else:
                pins[msg.object_id] = count - 1
        try:
            self.store.release_reader(msg.object_id)
        except Exception as exc:
            log.warning("release of %s failed: %s", msg.object_id.hex(), exc)
        self.serve_waiting()

    def on_free_objects(self, identity, msg) -> None:
        for object_id in msg.object_ids:
            if self.spilled.pop(object_id, None) is not None:
                spill_store = self._spill_store()
                self.spill_worker.submit_delete(spill_store, object_id)
            if self.store.contains(object_id):
                self.store.delete(object_id)
        self.serve_waiting()
