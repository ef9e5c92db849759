"""The raylet's disk threads: one writes objects from the arena into the
LMDB spill store, one reads spilled objects back into the arena, both off
the raylet's request path.

The raylet hands a thread (object_id, arena view); the thread runs its
operation (``SpillStore.put`` or ``SpillStore.read_into``) and reports the
object id back through ``done`` plus a byte on a pipe the raylet's poller
watches.  The raylet decides afterwards what the result means (drop the
arena copy, seal the restored object, or report the failure).
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from collections import deque

log = logging.getLogger("zray.raylet")


class SpillWorker:
    def __init__(self, operation, name: str = "zray-spill"):
        self._operation = operation             # (object_id, view) -> None; raises on failure
        self._requests: queue.Queue = queue.Queue()
        self.done: deque = deque()            # (object_id, True or the error message)
        self.wake_r, self._wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, object_id: bytes, view: memoryview) -> None:
        self._requests.put((object_id, view, self._operation))

    def submit_delete(self, spill_store, object_id: bytes) -> None:
        """Delete a spilled copy on this thread, in order with its writes (an
        LMDB write transaction on the raylet thread would wait for ours)."""
        self._requests.put((object_id, None, _Delete(spill_store)))

    def _run(self) -> None:
        while True:
            item = self._requests.get()
            if item is None:
                return
            object_id, view, operation = item
            try:
                operation(object_id, view)
                ok = True
            except Exception as exc:   # ENOSPC and friends: the raylet reports it
                log.warning("%s of %s failed: %s", self._thread.name, object_id.hex(), exc)
                ok = f"{type(exc).__name__}: {exc}"
            del view, item
            if type(operation) is _Delete:
                continue
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


class _Delete:
    def __init__(self, spill_store):
        self._store = spill_store

    def __call__(self, object_id, _view) -> None:
        self._store.delete(object_id)
