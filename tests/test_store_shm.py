"""Tests for zray.store.shm: the arena file, the writer mapping and zero-copy read-only gets."""

import gc
import os
import pickle
import shutil
import stat
import tempfile
import threading

import numpy as np
import pyarrow as pa
import pytest

from zray.store.arena import ArenaAllocator
from zray.store.layout import encoded_size, read_object, write_object
from zray.store.shm import (
    ArenaWriter,
    create_arena,
    destroy_arena,
    map_readonly,
    prefault_arena,
)

MiB = 1024 * 1024


@pytest.fixture
def arena_dir(tmp_path):
    if os.path.isdir("/dev/shm"):
        path = tempfile.mkdtemp(prefix="zray-test-", dir="/dev/shm")
        yield path
        shutil.rmtree(path, ignore_errors=True)
    else:
        yield str(tmp_path)


def make_arena(arena_dir, capacity):
    path = os.path.join(arena_dir, "session", "arena")
    create_arena(path, capacity)
    return path


def put(writer, allocator, value):
    """What a core worker's put does: pickle5 OOB, reserve, write in place."""
    buffers = []
    stream = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    size = encoded_size(len(stream), [b.raw().nbytes for b in buffers])
    offset = allocator.allocate(size)
    write_object(writer.view(offset, size), stream, buffers)
    return offset, size


def get(path, offset, size, on_release):
    stream, views = read_object(map_readonly(path, offset, size, on_release))
    return pickle.loads(stream, buffers=views)


def get_with_address(path, offset, size, on_release):
    """get(), plus the address where the object's mapping starts."""
    mapping = map_readonly(path, offset, size, on_release)
    address = np.frombuffer(mapping, dtype=np.uint8).ctypes.data
    stream, views = read_object(mapping)
    return pickle.loads(stream, buffers=views), address


class Counter:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1


def test_create_arena_file_mode_size_and_exclusive(arena_dir):
    path = make_arena(arena_dir, 8 * MiB)
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_size == 8 * MiB
    with pytest.raises(FileExistsError):
        create_arena(path, 8 * MiB)
    destroy_arena(path)
    assert not os.path.exists(path)
    destroy_arena(path)  # already gone: no error


def test_prefault_preserves_existing_bytes_and_honours_stop(arena_dir):
    path = make_arena(arena_dir, 8 * MiB)
    with ArenaWriter(path, 8 * MiB, populate=False) as writer:
        writer.view(5 * MiB, 5)[:] = b"hello"
        assert prefault_arena(path, 8 * MiB, chunk=MiB) == 8 * MiB
        assert bytes(writer.view(5 * MiB, 5)) == b"hello"
    stop = threading.Event()
    stop.set()
    assert prefault_arena(path, 8 * MiB, stop_event=stop) == 0


def test_writer_and_readonly_mapping_see_the_same_bytes(arena_dir):
    path = make_arena(arena_dir, 4 * MiB)
    writer = ArenaWriter(path, 4 * MiB)
    view = writer.view(8192, 100)
    view[:] = bytes(range(100))
    released = Counter()
    ro = map_readonly(path, 8192, 100, released)
    assert ro.readonly and len(ro) == 100
    assert bytes(ro) == bytes(range(100))
    with pytest.raises(TypeError):
        ro[0] = 1
    del ro
    gc.collect()
    assert released.calls == 1
    with pytest.raises(ValueError, match="outside the arena"):
        writer.view(4 * MiB - 10, 20)
    del view
    writer.close()
    assert bytes(writer.view(8192, 3)) == b"\x00\x01\x02"  # remaps after close
    writer.close()


def test_numpy_get_is_zero_copy_and_pin_released_after_last_view(arena_dir):
    capacity = 16 * MiB
    path = make_arena(arena_dir, capacity)
    writer, allocator = ArenaWriter(path, capacity), ArenaAllocator(capacity)
    original = np.arange(1_000_000, dtype=np.int64)
    offset, size = put(writer, allocator, original)

    released = Counter()
    arr, address = get_with_address(path, offset, size, released)
    assert arr.flags.writeable is False
    np.testing.assert_array_equal(arr, original)
    arr_offset = arr.ctypes.data - address
    assert 0 < arr_offset < size and arr_offset % 64 == 0
    # Zero copy: a write through the writer mapping shows up in the array.
    np.frombuffer(writer.view(offset + arr_offset, 8), dtype=np.int64)[0] = -42
    assert arr[0] == -42

    derived = memoryview(arr)
    del arr
    gc.collect()
    assert released.calls == 0  # the memoryview still references the mapping
    sliced = np.asarray(derived)[10:20]
    del derived
    gc.collect()
    assert released.calls == 0
    del sliced
    gc.collect()
    assert released.calls == 1
    gc.collect()
    assert released.calls == 1  # exactly once
    writer.close()


def test_pyarrow_table_get_is_zero_copy(arena_dir):
    capacity = 16 * MiB
    path = make_arena(arena_dir, capacity)
    writer, allocator = ArenaWriter(path, capacity), ArenaAllocator(capacity)
    table = pa.table({"x": np.arange(100_000), "y": np.random.rand(100_000)})
    offset, size = put(writer, allocator, table)

    released = Counter()
    out, lo = get_with_address(path, offset, size, released)
    assert out.equals(table)
    hi = lo + size
    for column in out.columns:
        data_buffer = column.chunk(0).buffers()[1]
        assert lo <= data_buffer.address and data_buffer.address + data_buffer.size <= hi
    column = out.column("x")
    del out
    gc.collect()
    assert released.calls == 0  # a column keeps the buffers alive
    del column, data_buffer
    gc.collect()
    assert released.calls == 1
    writer.close()


def test_freed_region_is_rewritten_in_place(arena_dir):
    capacity = 8 * MiB
    path = make_arena(arena_dir, capacity)
    writer, allocator = ArenaWriter(path, capacity), ArenaAllocator(capacity)
    first, size = put(writer, allocator, np.full(100_000, 1.0))
    allocator.free(first)
    second, _ = put(writer, allocator, np.full(100_000, 2.0))
    assert second == first
    np.testing.assert_array_equal(get(path, second, size, None), np.full(100_000, 2.0))
    writer.close()


def test_map_readonly_errors_release_the_pin(arena_dir):
    path = make_arena(arena_dir, MiB)
    released = Counter()
    with pytest.raises(ValueError, match="multiple"):
        map_readonly(path, 100, 10, released)
    assert released.calls == 1
    with pytest.raises(ValueError):
        map_readonly(path, 0, 0, released)
    assert released.calls == 2
    with pytest.raises((ValueError, OSError)):
        map_readonly(path, 0, 2 * MiB, released)  # past the end of the file
    assert released.calls == 3


def test_800mb_round_trip_is_byte_exact(arena_dir):
    n = 800 * 1000 * 1000 // 8
    value = np.arange(n, dtype=np.uint64)
    value *= np.uint64(0x9E3779B97F4A7C15)  # cheap non-repeating pattern
    capacity = 801 * MiB
    path = make_arena(arena_dir, capacity)
    writer, allocator = ArenaWriter(path, capacity), ArenaAllocator(capacity)
    offset, size = put(writer, allocator, value)
    released = Counter()
    out = get(path, offset, size, released)
    assert out.flags.writeable is False
    assert out.dtype == value.dtype and out.shape == value.shape
    assert np.array_equal(out, value)
    del out
    gc.collect()
    assert released.calls == 1
    writer.close()
    destroy_arena(path)
