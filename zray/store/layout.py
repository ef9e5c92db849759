"""Byte layout of one stored object: a pickle protocol 5 stream plus its out-of-band buffers.

Layout (all integers little-endian; offsets are relative to the start of the object)::

    offset  size     field
    0       4        magic b"ZOBJ"
    4       1        version (currently 1)
    5       3        zero padding
    8       4        number of out-of-band buffers, n (uint32)
    12      8        stream length in bytes (uint64)
    20      16 * n   buffer table: per buffer (offset uint64, length uint64)
    20+16n  len      the pickle stream
    ...              buffer i at its table offset

Buffers start on 64-byte boundaries (relative to the object start; the arena hands
out 4096-aligned object offsets, so they are 64-aligned in memory too) so numpy and
pyarrow get cache-line/SIMD-aligned data back.  The exception: a buffer of 1 MiB
or more written with its source's page phase (see _plan) sits at that phase, so
it comes back with exactly the alignment its source had.  Padding bytes are
unspecified.

Readers get slices of the source memoryview back (zero copy): over a read-only
mapping the buffers are read-only, and numpy arrays rebuilt from them have
``flags.writeable == False``.
"""

from __future__ import annotations

import os
import pickle
import struct

from zray.store.errors import CorruptObjectError
from zray.store.fastcopy import copy_array

ALIGN = 64
MAGIC = b"ZOBJ"
VERSION = 1

_FIXED = struct.Struct("<4sB3xIQ")  # magic, version, n_buffers, stream_len
_ENTRY_SIZE = 16  # (offset uint64, length uint64) per buffer
_GIL_FREE_COPY_MIN = 1 << 20  # copies at least this large go through numpy
_PHASE_MIN = 1 << 20          # buffers at least this large get a page phase (see _plan)
_PAGE = 4096
_PARALLEL_COPY_MIN = 64 << 20  # copies at least this large use several threads


def _align_up(n: int, align: int = ALIGN) -> int:
    return (n + align - 1) // align * align


def _plan(stream_len: int, buffer_lens: list[int], phases=None) -> tuple[int, list[int], int]:
    """Return (stream_offset, buffer_offsets, total_size) for the given lengths.

    ``phases`` (from ``source_phases``): for each large buffer, where in a page
    its source starts.  The buffer is then placed at exactly that phase
    (objects start page-aligned), so source and destination share their low
    address bits: a copy never writes just ahead of where it reads within a
    page (4K aliasing: measured 22 vs 31-37 GB/s for 800 MB here), and
    `rep movsb` streams (fastcopy.py; with the low bits mismatched it is
    slower than memcpy).  The copy keeps the source's own alignment; costs at
    most a page of padding per large buffer."""
    stream_offset = _FIXED.size + _ENTRY_SIZE * len(buffer_lens)
    end = stream_offset + stream_len
    offsets = []
    for index, length in enumerate(buffer_lens):
        phase = phases[index] if phases is not None else None
        if phase is not None and length >= _PHASE_MIN:
            start = end + (phase - end) % _PAGE
        else:
            start = _align_up(end)
        offsets.append(start)
        end = start + length
    return stream_offset, offsets, end


def source_phases(buffers: list) -> list | None:
    """Per buffer: its address modulo a page (None if unknown)."""
    try:
        import numpy as np
    except ImportError:
        return None
    phases = []
    for buf in buffers:
        try:
            address = np.frombuffer(_as_byte_view(buf), dtype=np.uint8).ctypes.data
        except (TypeError, ValueError):
            phases.append(None)
            continue
        phases.append(address % _PAGE)
    return phases


def _pack_header(stream_len: int, offsets: list[int], buffer_lens: list[int]) -> bytes:
    table = [v for pair in zip(offsets, buffer_lens) for v in pair]
    return _FIXED.pack(MAGIC, VERSION, len(buffer_lens), stream_len) + struct.pack(
        f"<{len(table)}Q", *table
    )


def _copy_into(dest: memoryview, start: int, src: memoryview) -> None:
    """dest[start:start+len(src)] = src, as one memcpy."""
    n = src.nbytes
    if n >= _GIL_FREE_COPY_MIN:
        try:
            import numpy as np  # already imported in any process that puts arrays
        except ImportError:
            np = None
        if np is not None:
            # numpy's copy releases the GIL (memoryview slice assignment holds it for
            # ~70 ms per 800 MB), so a worker's IO thread keeps serving during big puts.
            to = np.frombuffer(dest[start : start + n], dtype=np.uint8)
            frm = np.frombuffer(src, dtype=np.uint8)
            if n >= _PARALLEL_COPY_MIN and _copy_threads() > 1:
                _parallel_copy(np, to, frm, n)
            else:
                copy_array(np, to, frm)
            return
    dest[start : start + n] = src


# One thread alone does not saturate memory here: two copy 12 -> 21 GB/s
# (real data) and 40 -> 60 GB/s (zero pages) for 800 MB (as Ray's memcopy_threads).
_copy_pool = None


def _copy_threads() -> int:
    return min(4, os.cpu_count() or 1)


def _pool():
    global _copy_pool
    if _copy_pool is None:
        from concurrent.futures import ThreadPoolExecutor
        _copy_pool = ThreadPoolExecutor(_copy_threads() - 1, thread_name_prefix="zray-copy")
    return _copy_pool


def _on_copy_threads(work, parts: list) -> None:
    """work(part) for every part: the first on this thread, the rest on the pool."""
    futures = [_pool().submit(work, part) for part in parts[1:]]
    work(parts[0])
    for future in futures:
        future.result()


def _parallel_copy(np, to, frm, n: int) -> None:
    step = _align_up(-(-n // _copy_threads()), _PAGE)
    bounds = [(a, min(a + step, n)) for a in range(0, n, step)]
    _on_copy_threads(lambda ab: copy_array(np, to[ab[0]:ab[1]], frm[ab[0]:ab[1]]), bounds)


def copy_pieces(pieces: list) -> None:
    """Copy each (dest, src) pair of equal-length byte memoryviews.  Pieces
    adding up to _PARALLEL_COPY_MIN are spread over the copy threads in
    contiguous runs (restoring a spilled object: its 16 MiB LMDB chunks)."""
    total = sum(src.nbytes for _, src in pieces)
    try:
        import numpy as np
    except ImportError:
        np = None
    if np is None or total < _PARALLEL_COPY_MIN or _copy_threads() < 2 or len(pieces) < 2:
        for dest, src in pieces:
            _copy_into(dest, 0, src)
        return

    def copy_run(run):
        for dest, src in run:
            copy_array(np, np.frombuffer(dest, dtype=np.uint8), np.frombuffer(src, dtype=np.uint8))

    share = -(-total // _copy_threads())
    runs, current, size = [], [], 0
    for piece in pieces:
        current.append(piece)
        size += piece[1].nbytes
        if size >= share:
            runs.append(current)
            current, size = [], 0
    if current:
        runs.append(current)
    _on_copy_threads(copy_run, runs)


def _forget_copy_pool() -> None:   # a forked child does not inherit the pool's threads
    global _copy_pool
    _copy_pool = None


os.register_at_fork(after_in_child=_forget_copy_pool)


def _as_byte_view(buf) -> memoryview:
    """A flat unsigned-byte view of buf's memory, copying only if it is non-contiguous."""
    try:
        # PickleBuffer.raw() gives the raw bytes of any C- or F-contiguous buffer.
        pb = buf if isinstance(buf, pickle.PickleBuffer) else pickle.PickleBuffer(buf)
        return pb.raw()
    except BufferError:
        # Non-contiguous: the consumer pickled it out-of-band anyway; flatten in C order.
        return memoryview(memoryview(buf).tobytes())


def _as_byte_dest(dest) -> memoryview:
    mv = dest if isinstance(dest, memoryview) else memoryview(dest)
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    return mv


def encoded_size(stream_len: int, buffer_lens: list[int], phases=None) -> int:
    """Total bytes the object occupies: header + stream + 64-aligned buffers."""
    return _plan(stream_len, list(buffer_lens), phases)[2]


def write_object(dest: memoryview, stream, buffers: list, phases=None) -> int:
    """Write header + stream + buffers into dest; return the number of bytes written.

    dest must be writable and at least encoded_size(..., phases) long.  Each
    piece is copied with memcpy (numpy's, without the GIL, for pieces of 1 MiB
    and more; split over threads from 64 MiB).
    """
    dest = _as_byte_dest(dest)
    if dest.readonly:
        raise ValueError("write_object: destination buffer is read-only")
    stream_view = _as_byte_view(stream)
    views = [_as_byte_view(b) for b in buffers]
    lens = [v.nbytes for v in views]
    stream_offset, offsets, total = _plan(stream_view.nbytes, lens, phases)
    if dest.nbytes < total:
        raise ValueError(
            f"write_object: destination holds {dest.nbytes} bytes, object needs {total}"
        )
    header = _pack_header(stream_view.nbytes, offsets, lens)
    dest[: len(header)] = header
    _copy_into(dest, stream_offset, stream_view)
    for start, view in zip(offsets, views):
        _copy_into(dest, start, view)
    return total


def encode_to_bytes(stream, buffers: list) -> bytes:
    """The same layout as write_object, as a fresh bytes object (for small inline objects)."""
    stream_view = _as_byte_view(stream)
    views = [_as_byte_view(b) for b in buffers]
    lens = [v.nbytes for v in views]
    _, offsets, total = _plan(stream_view.nbytes, lens)
    parts = [_pack_header(stream_view.nbytes, offsets, lens), stream_view]
    end = _FIXED.size + _ENTRY_SIZE * len(views) + stream_view.nbytes
    for start, view in zip(offsets, views):
        parts.append(bytes(start - end))  # alignment padding
        parts.append(view)
        end = start + view.nbytes
    # One join = one copy of every piece.
    return b"".join(parts)


def read_object(src) -> tuple[memoryview, list[memoryview]]:
    """Parse and validate an encoded object; return (stream, buffers) as slices of src.

    Raises CorruptObjectError if the header is malformed or any region falls outside src.
    src may be longer than the object (e.g. a page-rounded mapping).
    """
    src = _as_byte_dest(src)
    size = src.nbytes
    if size < _FIXED.size:
        raise CorruptObjectError(
            f"object too short for a header: {size} bytes, need at least {_FIXED.size}"
        )
    magic, version, n_buffers, stream_len = _FIXED.unpack_from(src, 0)
    if magic != MAGIC:
        raise CorruptObjectError(f"bad magic {bytes(magic)!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise CorruptObjectError(f"unsupported object layout version {version}, expected {VERSION}")
    stream_offset = _FIXED.size + _ENTRY_SIZE * n_buffers
    if stream_offset > size:
        raise CorruptObjectError(
            f"buffer table for {n_buffers} buffers ends at {stream_offset}, past object end {size}"
        )
    stream_end = stream_offset + stream_len
    if stream_end > size:
        raise CorruptObjectError(
            f"stream of {stream_len} bytes at {stream_offset} ends past object end {size}"
        )
    table = struct.unpack_from(f"<{2 * n_buffers}Q", src, _FIXED.size)
    buffers = []
    prev_end = stream_end
    for i in range(n_buffers):
        start, length = table[2 * i], table[2 * i + 1]
        if start % ALIGN and length < _PHASE_MIN:   # large ones may sit at their source's phase
            raise CorruptObjectError(f"buffer {i} offset {start} is not {ALIGN}-byte aligned")
        if start < prev_end:
            raise CorruptObjectError(
                f"buffer {i} at offset {start} overlaps the previous region ending at {prev_end}"
            )
        if start + length > size:
            raise CorruptObjectError(
                f"buffer {i} ({length} bytes at {start}) ends past object end {size}"
            )
        buffers.append(src[start : start + length])
        prev_end = start + length
    return src[stream_offset:stream_end], buffers
