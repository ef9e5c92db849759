"""The raylet's spill thread: writes objects from the arena into the LMDB
spill store off the raylet's request path.

The raylet hands it (object_id, arena view); the thread writes the bytes and
reports the object id back through ``done`` plus a byte on a pipe the
raylet's poller watches.  The raylet decides afterwards whether the arena
copy can go (nobody started reading it meanwhile) or the spilled copy must
(the object was freed or is in use).
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from collections import deque

log = logging.getLogger("zray.raylet")


class SpillWorker:
    def __init__(self, spill_store):
        self._store = spill_store
        self._requests: queue.Queue = queue.Queue()
        self.done: deque = deque()            # (object_id, True or the error message)
        self.wake_r, self._wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        self._thread = threading.Thread(target=self._run, name="zray-spill", daemon=True)
        self._thread.start()

    def submit(self, object_id: bytes, view: memoryview) -> None:
        self._requests.put((object_id, view))

    def _run(self) -> None:
        while True:
            item = self._requests.get()
            if item is None:
                return
            object_id, view = item
            try:
                self._store.put(object_id, view)
                ok = True
            except Exception as exc:   # ENOSPC and friends: the raylet reports it
                log.warning("spilling %s failed: %s", object_id.hex(), exc)
                ok = f"{type(exc).__name__}: {exc}"
            del view, item
            self.done.append((object_id, ok))
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass

    def take_done(self) -> list:
        try:
            os.read(self.wake_r, 4096)
        except BlockingIOError:
            pass
        finished = []
        while self.done:
            finished.append(self.done.popleft())
        return finished

    def stop(self) -> None:
        self._requests.put(None)
        self._thread.join(timeout=5)
        for fd in (self.wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
