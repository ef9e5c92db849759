"""LMDB-backed spill store: primary copies evicted from a host's arena.

Key layout (one LMDB environment per host, under the session directory):
    object_id + b"#"                -> 8-byte little-endian total size
    object_id + 4-byte chunk index  -> up to CHUNK_BYTES (16 MiB) of the object
Values are chunked so one object never needs one giant LMDB page run.  The
map starts large (address space only: without writemap LMDB does not grow
the file to it) and doubles when full; growing waits until no transaction
is open on any thread (LMDB invalidates them: the raylet reads on its
restore thread while its spill thread writes).  Writes use sync=False
(spilled objects do not outlive the session) and one transaction per object.

Disk blocks are reserved ahead of the writes (fallocate, keeping the file
size): writing 256 MiB objects into a fresh LMDB file measured 0.4-0.9 GB/s
here, into reserved blocks 2.6-2.9 GB/s.  The reservation grows by doubling,
never past a quarter of the free disk; without fallocate it is skipped.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import threading

import lmdb

from .layout import copy_pieces

log = logging.getLogger(__name__)

CHUNK_BYTES = 16 << 20   # measured: 4-16 MiB chunks write 2-4x faster than 64 MiB
DEFAULT_MAP_SIZE = 64 << 30
MIN_RESERVE = 1 << 30
_FALLOC_FL_KEEP_SIZE = 1
_SIZE_SUFFIX = b"#"


class SpillStore:
    def __init__(self, path: str, map_size: int = DEFAULT_MAP_SIZE):
        self.path = path
        self._env = lmdb.open(path, map_size=map_size, subdir=True, sync=False,
                              metasync=False, readahead=False, max_dbs=0)
        self.num_objects = 0
        self.bytes = 0
        self._txns = threading.Condition()
        self._open_txns = 0
        self._growing = False
        self._reserved = 0            # bytes of data.mdb's blocks reserved so far
        self._fallocate = _fallocate_function()
        self._data_fd = os.open(os.path.join(path, "data.mdb"), os.O_RDWR | os.O_CLOEXEC)

    def _reserve_for(self, nbytes: int) -> None:
        """Reserve disk blocks so the next ``nbytes`` land in allocated space."""
        if self._fallocate is None:
            return
        info = self._env.info()
        used = (info["last_pgno"] + 1) * self._env.stat()["psize"]
        need = used + nbytes + (nbytes >> 3)
        if need <= self._reserved:
            return
        target = max(need, 2 * self._reserved, MIN_RESERVE)
        try:
            target = min(target, self._reserved + shutil.disk_usage(self.path).free // 4)
        except OSError:
            return
        if target <= self._reserved:
            return
        if self._fallocate(self._data_fd, _FALLOC_FL_KEEP_SIZE, 0, target) == 0:
            self._reserved = target
        else:   # no room or no support: write without a reservation (errors surface there)
            log.debug("fallocate of %d bytes failed: errno %d", target, ctypes.get_errno())

    @contextlib.contextmanager
    def _txn(self, write: bool = False, buffers: bool = False):
        with self._txns:
            while self._growing:
                self._txns.wait()
            self._open_txns += 1
        try:
            with self._env.begin(write=write, buffers=buffers) as txn:
                yield txn
        finally:
            with self._txns:
                self._open_txns -= 1
                if not self._open_txns:
                    self._txns.notify_all()

    def _grow(self) -> None:
        with self._txns:
            self._growing = True
            try:
                while self._open_txns:
                    self._txns.wait()
                self._env.set_mapsize(self._env.info()["map_size"] * 2)
            finally:
                self._growing = False
                self._txns.notify_all()

    def put(self, object_id: bytes, data: memoryview) -> None:
        data = memoryview(data).cast("B")
        self._reserve_for(len(data))
        while True:
            try:
                with self._txn(write=True) as txn:
                    txn.put(object_id + _SIZE_SUFFIX, len(data).to_bytes(8, "little"))
                    for index, start in enumerate(range(0, len(data), CHUNK_BYTES)):
                        txn.put(object_id + index.to_bytes(4, "little"),
                                data[start:start + CHUNK_BYTES])
                break
            except lmdb.MapFullError:
                self._grow()
        self.num_objects += 1
        self.bytes += len(data)

    def size(self, object_id: bytes):
        with self._txn() as txn:
            raw = txn.get(object_id + _SIZE_SUFFIX)
        return None if raw is None else int.from_bytes(raw, "little")

    def read_into(self, object_id: bytes, dest: memoryview) -> int:
        """Copy the object into ``dest``; returns its size (KeyError if absent)."""
        dest = memoryview(dest).cast("B")
        with self._txn(buffers=True) as txn:
            raw = txn.get(object_id + _SIZE_SUFFIX)
            if raw is None:
                raise KeyError(f"object {object_id.hex()} is not spilled")
            size = int.from_bytes(bytes(raw), "little")
            pieces = []
            for index, start in enumerate(range(0, size, CHUNK_BYTES)):
                chunk = txn.get(object_id + index.to_bytes(4, "little"))
                pieces.append((dest[start:start + len(chunk)], memoryview(chunk)))
            copy_pieces(pieces)   # within the txn: the chunks are views of LMDB's map
        return size

    def delete(self, object_id: bytes) -> bool:
        size = self.size(object_id)
        if size is None:
            return False
        with self._txn(write=True) as txn:
            txn.delete(object_id + _SIZE_SUFFIX)
            for index in range((size + CHUNK_BYTES - 1) // CHUNK_BYTES):
                txn.delete(object_id + index.to_bytes(4, "little"))
        self.num_objects -= 1
        self.bytes -= size
        return True

    def close(self) -> None:
        self._env.close()
        os.close(self._data_fd)


def _fallocate_function():
    """libc's fallocate(2) (Linux; no zero-writing emulation), or None."""
    try:
        function = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong]
    function.restype = ctypes.c_int
    return function
