"""The arena file in /dev/shm and the process-side mappings of it.

- Raylet side: create_arena() makes the file, prefault_arena() populates its pages
  (meant for a background thread, so startup stays fast), destroy_arena() removes it.
- Writer side: ArenaWriter maps the whole arena once per process (MAP_SHARED, RW) and
  hands out writable slices, so repeated puts into a region hit pages this process
  already has mapped (~10 GB/s memcpy) instead of faulting (~1.5-2.5 GB/s).
- Reader side: map_readonly() maps just one object's pages read-only and releases
  the reader's pin (a callback) when the last Python view derived from the mapping
  is garbage-collected, as plasma's client release does.

Offsets handed to ArenaWriter.view and map_readonly are those of ArenaAllocator;
map_readonly needs them to be multiples of mmap.ALLOCATIONGRANULARITY (4096 on Linux),
which the allocator's default alignment guarantees.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import threading
import weakref
from typing import Callable

# Python 3.11's mmap module lacks the constant; the Linux value is stable (5.14+).
MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)
_PAGE = mmap.PAGESIZE
# ArenaWriter tracks which parts of its mapping are populated at this granularity.
_POPULATE_CHUNK = 256 * 1024


def create_arena(path: str, capacity: int) -> None:
    """Create the arena file (mode 0600, parent dir 0700 if missing) sized to capacity.

    The file is sparse: no memory is used until pages are touched or prefaulted.
    Raises FileExistsError if it already exists (a stale arena from another raylet).
    """
    if capacity <= 0:
        raise ValueError(f"arena capacity must be positive, got {capacity}")
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.ftruncate(fd, capacity)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


def destroy_arena(path: str) -> None:
    """Remove the arena file (existing mappings stay valid until unmapped) and its cached fd."""
    _forget_readonly_fd(path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _load_libc_madvise():
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


# Called through ctypes because ctypes drops the GIL for the call, while
# mmap.madvise holds it: populating 800 MB takes ~150-250 ms of kernel time that
# would otherwise freeze every other thread (the raylet's event loop, a worker's IO
# thread).
_libc_madvise = _load_libc_madvise()


def _mapping_address(mm: mmap.mmap) -> int | None:
    if _libc_madvise is None:
        return None
    # The temporary ctypes object's buffer export ends at once; the address stays
    # valid for as long as mm is mapped.
    return ctypes.addressof(ctypes.c_char.from_buffer(mm))


def _populate(mm: mmap.mmap, address: int | None, start: int, length: int) -> None:
    """Fault in [start, start+length) of a shared RW mapping without changing its bytes.

    address is _mapping_address(mm) (None: use mmap.madvise, which holds the GIL).
    """
    try:
        if address is None:
            mm.madvise(MADV_POPULATE_WRITE, start, length)
        elif _libc_madvise(address + start, length, MADV_POPULATE_WRITE) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
    except OSError as exc:
        if exc.errno in (errno.EFAULT, errno.ENOMEM):
            # The kernel reports here what would otherwise be a SIGBUS on first write.
            raise OSError(
                exc.errno, f"cannot allocate arena pages [{start}, {start + length}): "
                "is /dev/shm full?"
            ) from exc
        raise


def prefault_arena(
    path: str,
    capacity: int,
    chunk: int = 64 * 1024 * 1024,
    stop_event: threading.Event | None = None,
) -> int:
    """Allocate and zero the arena's pages chunk by chunk; return the bytes done.

    Uses MADV_POPULATE_WRITE on a temporary MAP_SHARED mapping (pages end up in the
    tmpfs page cache; writers' later faults are then cheap minor faults).  Falls back
    to posix_fallocate where that madvise is unsupported.  Never writes bytes, so it
    is safe while writers are already filling the arena.  Stops early when stop_event
    is set.  Raises OSError if /dev/shm cannot hold the arena.
    """
    chunk = max(_PAGE, chunk - chunk % _PAGE)
    done = 0
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        with mmap.mmap(fd, capacity, flags=mmap.MAP_SHARED) as mm:
            address = _mapping_address(mm)
            use_madvise = True
            while done < capacity:
                if stop_event is not None and stop_event.is_set():
                    break
                length = min(chunk, capacity - done)
                if use_madvise:
                    try:
                        _populate(mm, address, done, length)
                    except OSError as exc:
                        if exc.errno != errno.EINVAL:  # EINVAL: kernel < 5.14
                            raise
                        use_madvise = False
                if not use_madvise:
                    # Allocates without writing (writing a byte per page would race
                    # with writers already using the arena).
                    os.posix_fallocate(fd, done, length)
                done += length
    finally:
        os.close(fd)
    return done


class ArenaWriter:
    """One process's persistent read-write mapping of the arena (mapped lazily, once)."""

    def __init__(self, path: str, capacity: int, populate: bool = True) -> None:
        self._path = path
        self._capacity = capacity
        self._populate = populate
        self._lock = threading.Lock()
        self._mm: mmap.mmap | None = None
        self._address: int | None = None
        self._base: memoryview | None = None
        self._populated = bytearray(-(-capacity // _POPULATE_CHUNK))

    @property
    def path(self) -> str:
        return self._path

    @property
    def capacity(self) -> int:
        return self._capacity

    def _map(self) -> memoryview:
        with self._lock:
            if self._base is None:
                fd = os.open(self._path, os.O_RDWR | os.O_CLOEXEC)
                try:
                    self._mm = mmap.mmap(fd, self._capacity, flags=mmap.MAP_SHARED)
                    self._address = _mapping_address(self._mm)
                finally:
                    os.close(fd)  # the mapping keeps the file alive
                self._base = memoryview(self._mm)
            return self._base

    def _ensure_populated(self, offset: int, size: int) -> None:
        # Populating a range in one madvise is ~1.5-2x cheaper than taking its page
        # faults one by one during the memcpy, and turns "shm full" into an OSError.
        first, last = offset // _POPULATE_CHUNK, (offset + size - 1) // _POPULATE_CHUNK
        marks = self._populated
        lo = marks.find(0, first, last + 1)
        if lo == -1:
            return
        hi = marks.rfind(0, first, last + 1)
        start = lo * _POPULATE_CHUNK
        end = min((hi + 1) * _POPULATE_CHUNK, self._capacity)
        try:
            _populate(self._mm, self._address, start, end - start)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self._populate = False  # unsupported kernel: just take the faults
            return
        marks[lo : hi + 1] = b"\x01" * (hi + 1 - lo)

    def view(self, offset: int, size: int) -> memoryview:
        """A writable view of arena bytes [offset, offset+size)."""
        if offset < 0 or size < 0 or offset + size > self._capacity:
            raise ValueError(
                f"view [{offset}, {offset + size}) is outside the arena [0, {self._capacity})"
            )
        base = self._base if self._base is not None else self._map()
        if self._populate and size:
            self._ensure_populated(offset, size)
        return base[offset : offset + size]

    def close(self) -> None:
        """Unmap. Views still alive keep the mapping until they are released."""
        with self._lock:
            base, mm = self._base, self._mm
            self._base = self._mm = self._address = None
            self._populated = bytearray(len(self._populated))
        if base is not None:
            try:
                base.release()
                mm.close()
            except BufferError:
                pass  # outstanding views; munmap happens when they are collected

    def __enter__(self) -> "ArenaWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_readonly_fds: dict[str, int] = {}
_readonly_fds_lock = threading.Lock()


def _readonly_fd(path: str) -> int:
    fd = _readonly_fds.get(path)
    if fd is None:
        with _readonly_fds_lock:
            fd = _readonly_fds.get(path)
            if fd is None:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                _readonly_fds[path] = fd
    return fd


def _forget_readonly_fd(path: str) -> None:
    with _readonly_fds_lock:
        fd = _readonly_fds.pop(path, None)
    if fd is not None:
        os.close(fd)


def close_readonly_fds() -> None:
    """Close every cached read-only arena fd (mappings already made stay valid)."""
    for path in list(_readonly_fds):
        _forget_readonly_fd(path)


def map_readonly(
    path: str, offset: int, size: int, on_release: Callable[[], None] | None
) -> memoryview:
    """Map arena bytes [offset, offset+size) read-only; return a memoryview of exactly size bytes.

    on_release runs exactly once, when the last view derived from the mapping (this
    memoryview, its slices, numpy arrays or pyarrow buffers over them) has been
    garbage-collected; it may run on any thread, so it must be thread-safe (e.g.
    queue a release message rather than touch a socket).  It is not run at
    interpreter exit: the raylet must drop the pins of a client that disconnects.
    If mapping fails, on_release runs before the error propagates.
    offset must be a multiple of mmap.ALLOCATIONGRANULARITY.
    """
    try:
        if size <= 0:
            raise ValueError(f"map_readonly: size must be positive, got {size}")
        if offset % mmap.ALLOCATIONGRANULARITY:
            raise ValueError(
                f"map_readonly: offset {offset} is not a multiple of "
                f"{mmap.ALLOCATIONGRANULARITY}"
            )
        mm = mmap.mmap(_readonly_fd(path), size, offset=offset, access=mmap.ACCESS_READ)
    except BaseException:
        if on_release is not None:
            on_release()
        raise
    if on_release is not None:
        finalizer = weakref.finalize(mm, on_release)
        finalizer.atexit = False
    return memoryview(mm)
