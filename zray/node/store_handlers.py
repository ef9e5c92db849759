"""The raylet's object-store requests (mixin of Raylet: uses its ``store``
ObjectTable, ``clients`` table and ``send``).

Create reserves space in the arena (no queueing or spilling yet: a full
store answers with ObjectStoreFullError's message), Seal makes an object
readable, Get pins it for a reader (pins are tracked per client so a
client that dies releases them), Release unpins, Free deletes (deferred
while readers hold pins).
"""
from __future__ import annotations

import logging

from ..sockets import messages as m

log = logging.getLogger("zray.raylet")


class StoreHandlers:
    def on_create_object(self, identity, msg) -> None:
        try:
            offset = self.store.create(msg.object_id, msg.size)
        except Exception as exc:
            self.send(identity, m.CreateObjectReply(msg.request_id, -1, 1, str(exc)))
            return
        if offset is None:
            stats = self.store.stats()
            self.send(identity, m.CreateObjectReply(msg.request_id, -1, 8, (
                f"object store is full: cannot allocate {msg.size} bytes (capacity "
                f"{stats['capacity']}, used {stats['used_bytes']}, largest free block "
                f"{stats['largest_free_block']})")))
            return
        self.send(identity, m.CreateObjectReply(msg.request_id, offset, 0, ""))

    def on_seal_object(self, identity, msg) -> None:
        try:
            self.store.seal(msg.object_id)
        except Exception as exc:
            log.warning("seal of %s failed: %s", msg.object_id.hex(), exc)

    def on_get_object(self, identity, msg) -> None:
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

    def on_free_objects(self, identity, msg) -> None:
        for object_id in msg.object_ids:
            self.store.delete(object_id)
