"""The raylet's object-store requests (mixin of Raylet: uses its ``store``
ObjectTable, ``clients`` table and ``send``).

Create reserves space in the arena; under pressure the raylet first spills
sealed, unread objects (oldest first) to the host's LMDB spill store, then
waits in a FIFO that is retried whenever space is freed, and only after
``--object-store-full-timeout-s`` answers with ObjectStoreFullError's
message naming the sizes (spilling comes next).  Seal makes an object
readable, Get pins it for a reader (pins are tracked per client so a
client that dies releases them), Release unpins, Free deletes (deferred
while readers hold pins).
"""
from __future__ import annotations

import logging
import os
import time

import zmq

from ..sockets import messages as m
from ..store import ObjectState, shm
from ..store.spill import SpillStore
from .spill_worker import SpillWorker

SPILL_RETRY_S = 1.0    # after a failed spill (disk full), wait this long before the next

log = logging.getLogger("zray.raylet")


class StoreHandlers:
    def on_create_object(self, identity, msg) -> None:
        capacity = self.store.stats()["capacity"]
        if msg.size > capacity:
            self.send(identity, m.CreateObjectReply(msg.request_id, -1, 8, (
                f"object of {msg.size} bytes can never fit: the object store holds "
                f"{capacity} bytes (set object_store_memory higher)")))
            return
        if self.pending_creates or not self._try_create(identity, msg):
            deadline = time.monotonic() + self.args.object_store_full_timeout_s
            self.pending_creates.append((identity, msg, deadline))

    def _try_create(self, identity, msg) -> bool:
        """Reply to a create if it can be decided now; False if it must wait."""
        try:
            offset = self.store.create(msg.object_id, msg.size)
        except Exception as exc:
            self.send(identity, m.CreateObjectReply(msg.request_id, -1, 1, str(exc)))
            return True
        if offset is None:
            if not self._make_room(msg.size):
                return False
            offset = self.store.create(msg.object_id, msg.size)
            if offset is None:
                return False
        self.send(identity, m.CreateObjectReply(msg.request_id, offset, 0, ""))
        return True

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
            self.spill_worker = SpillWorker(self._spill)
            self.poller.register(self.spill_worker.wake_r, zmq.POLLIN)
        return self._spill

    def _make_room(self, needed: int) -> bool:
        """True if a block of ``needed`` bytes is free now.  Otherwise start
        spilling sealed objects nobody reads (oldest first) on the spill
        thread until enough bytes are on their way out; the create waits and
        is retried when they finish."""
        stats = self.store.stats()
        if stats["largest_free_block"] >= needed:
            return True
        coming = stats["free_bytes"] + sum(self.spilling.values())
        failure = self.spill_failure
        if failure is not None and time.monotonic() - failure[0] < SPILL_RETRY_S:
            return False   # the spill store just failed (disk full?): do not spin on it
        for object_id, info in self.store.objects():
            if coming >= needed:
                break
            if (info.state != ObjectState.SEALED or info.readers or info.pending_delete
                    or object_id in self.spilling):
                continue
            self._spill_store()
            self.spilling[object_id] = info.size
            self.spill_worker.submit(object_id, self._arena_view(info.offset, info.size))
            coming += info.size
        return False

    def on_spills_done(self) -> None:
        for object_id, ok in self.spill_worker.take_done():
            size = self.spilling.pop(object_id)
            if ok is not True:
                self.spill_failure = (time.monotonic(), ok)
                continue
            self.spill_failure = None
            info = self.store.info(object_id) if self.store.contains(object_id) else None
            if ok and info is not None and not info.readers:
                self.store.delete(object_id)          # the arena copy goes
                self.spilled[object_id] = size
                self.spill_counts["spilled_objects_total"] += 1
                self.spill_counts["spilled_bytes_total"] += size
            elif ok:                                   # freed, or read meanwhile
                self._spill.delete(object_id)
        self.retry_pending_creates()

    def _make_room_now(self, needed: int) -> bool:
        """Synchronous variant for a restore that a reader waits on."""
        while not self._make_room(needed):
            if not self.spilling:
                return False
            deadline = time.monotonic() + self.args.object_store_full_timeout_s
            while self.spilling and time.monotonic() < deadline:
                if not self.spill_worker.done:
                    time.sleep(0.001)
                    continue
                self.on_spills_done()
            if self.spilling:
                return False
        return True

    def _restore(self, object_id: bytes) -> bool:
        """Bring a spilled object back into the arena (sealed); False if no room."""
        size = self.spilled[object_id]
        offset = self.store.create(object_id, size)
        if offset is None and self._make_room_now(size):
            offset = self.store.create(object_id, size)
        if offset is None:
            return False
        view = self._arena_view(offset, size)
        self._spill_store().read_into(object_id, view)
        del view
        self.store.seal(object_id)
        self._spill_store().delete(object_id)
        del self.spilled[object_id]
        self.spill_counts["restored_objects_total"] += 1
        self.spill_counts["restored_bytes_total"] += size
        return True

    def retry_pending_creates(self) -> None:
        """Space was freed: serve waiting creates in arrival order."""
        pending = self.pending_creates
        while pending:
            identity, msg, _ = pending[0]
            if not self._try_create(identity, msg):
                return
            pending.popleft()

    def expire_pending_creates(self, now: float) -> None:
        pending = self.pending_creates
        if not pending:
            return
        failure = self.spill_failure
        if failure is not None and now - failure[0] >= SPILL_RETRY_S and not self.spilling:
            self.retry_pending_creates()      # try spilling again (disk space may be back)
            pending = self.pending_creates
        keep = type(pending)()
        for identity, msg, deadline in pending:
            if now < deadline:
                keep.append((identity, msg, deadline))
                continue
            stats = self.store.stats()
            why = ""
            if self.spill_failure is not None:
                why = f"; spilling to {self._spill.path} failed: {self.spill_failure[1]}"
            self.send(identity, m.CreateObjectReply(msg.request_id, -1, 8, (
                f"object store is full: cannot allocate {msg.size} bytes after waiting "
                f"{self.args.object_store_full_timeout_s:g}s (capacity {stats['capacity']}, "
                f"used {stats['used_bytes']} by {stats['num_objects']} objects, largest free "
                f"block {stats['largest_free_block']}){why}")))
        self.pending_creates = keep

    def drop_pending_creates(self, identity) -> None:
        self.pending_creates = type(self.pending_creates)(
            item for item in self.pending_creates if item[0] != identity)

    def on_seal_object(self, identity, msg) -> None:
        try:
            self.store.seal(msg.object_id)
        except Exception as exc:
            log.warning("seal of %s failed: %s", msg.object_id.hex(), exc)

    def on_get_object(self, identity, msg) -> None:
        if msg.object_id in self.spilled and not self._restore(msg.object_id):
            # offset -2: spilled, and no room to bring it back right now.
            self.send(identity, m.GetObjectLocalReply(msg.request_id, msg.object_id, -2,
                                                      self.spilled[msg.object_id]))
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
        self.retry_pending_creates()

    def on_free_objects(self, identity, msg) -> None:
        for object_id in msg.object_ids:
            if self.spilled.pop(object_id, None) is not None:
                self._spill_store().delete(object_id)
            else:
                self.store.delete(object_id)
        self.retry_pending_creates()
