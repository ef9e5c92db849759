"""Tests for zray.store.layout: the header + stream + aligned-buffers object encoding."""

import pickle
import struct

import numpy as np
import pyarrow as pa
import pytest

from zray.store import layout
from zray.store.errors import CorruptObjectError
from zray.store.layout import ALIGN, encode_to_bytes, encoded_size, read_object, write_object


def dumps_oob(value):
    buffers = []
    stream = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    return stream, buffers


def loads(src):
    stream, buffers = read_object(src)
    return pickle.loads(stream, buffers=buffers)


def test_roundtrip_numpy_through_write_object():
    value = {"a": np.arange(1000, dtype=np.float64), "b": np.ones((7, 3), dtype=np.int8), "s": "x"}
    stream, buffers = dumps_oob(value)
    assert len(buffers) == 2
    size = encoded_size(len(stream), [b.raw().nbytes for b in buffers])
    dest = bytearray(size + 100)  # destinations may be larger than the object
    assert write_object(memoryview(dest), stream, buffers) == size
    out = loads(memoryview(dest))
    np.testing.assert_array_equal(out["a"], value["a"])
    np.testing.assert_array_equal(out["b"], value["b"])
    assert out["s"] == "x"


def test_encode_to_bytes_matches_write_object_layout():
    stream, buffers = dumps_oob([np.arange(10), np.arange(3, dtype=np.uint8), b"inline"])
    encoded = encode_to_bytes(stream, buffers)
    assert len(encoded) == encoded_size(len(stream), [b.raw().nbytes for b in buffers])
    dest = bytearray(len(encoded))
    write_object(memoryview(dest), stream, buffers)
    assert bytes(dest) == encoded
    out = loads(encoded)
    np.testing.assert_array_equal(out[0], np.arange(10))
    assert out[2] == b"inline"


def test_buffers_start_on_64_byte_boundaries_and_are_zero_copy_slices():
    bufs = [b"x" * 1, b"y" * 65, b"", b"z" * 200]
    dest = bytearray(encoded_size(5, [len(b) for b in bufs]))
    write_object(memoryview(dest), b"hello", bufs)
    stream, views = read_object(memoryview(dest))
    assert bytes(stream) == b"hello"
    assert [bytes(v) for v in views] == bufs
    base = np.frombuffer(dest, dtype=np.uint8).ctypes.data
    for view in views:
        if view.nbytes:
            addr = np.frombuffer(view, dtype=np.uint8).ctypes.data
            assert (addr - base) % ALIGN == 0
    views[3][0:1] = b"Q"  # a slice of dest, not a copy
    assert dest.find(b"Q" + b"z" * 199) > 0


def test_header_fields_are_documented_little_endian():
    encoded = encode_to_bytes(b"abc", [b"0123456789"])
    magic, version, n_buffers, stream_len = struct.unpack_from("<4sB3xIQ", encoded)
    assert (magic, version, n_buffers, stream_len) == (b"ZOBJ", 1, 1, 3)
    offset, length = struct.unpack_from("<QQ", encoded, 20)
    assert offset % ALIGN == 0 and length == 10
    assert encoded[offset : offset + length] == b"0123456789"
    assert encoded[36:39] == b"abc"


def test_no_buffers_and_empty_stream():
    assert read_object(encode_to_bytes(b"", []))[1] == []
    assert encoded_size(0, []) == 20
    stream, views = read_object(encode_to_bytes(b"s", []))
    assert bytes(stream) == b"s" and views == []


def test_readonly_source_gives_readonly_buffers_and_arrays():
    arr = np.arange(100, dtype=np.int32)
    encoded = encode_to_bytes(*dumps_oob(arr))  # bytes: read-only
    stream, views = read_object(encoded)
    assert all(v.readonly for v in views)
    out = pickle.loads(stream, buffers=views)
    assert out.flags.writeable is False
    np.testing.assert_array_equal(out, arr)


def test_fortran_and_noncontiguous_buffers():
    fortran = np.asfortranarray(np.arange(12.0).reshape(3, 4))
    out = loads(encode_to_bytes(*dumps_oob(fortran)))
    np.testing.assert_array_equal(out, fortran)
    strided = memoryview(bytes(range(20)))[::2]  # non-contiguous: copied to bytes
    _, views = read_object(encode_to_bytes(b"", [strided, memoryview(np.arange(4, dtype=np.int16))]))
    assert bytes(views[0]) == bytes(range(0, 20, 2))
    assert bytes(views[1]) == np.arange(4, dtype=np.int16).tobytes()


def test_pyarrow_table_roundtrip():
    table = pa.table({"x": np.arange(10_000), "y": np.random.rand(10_000)})
    stream, buffers = dumps_oob(table)
    assert buffers, "pyarrow should pickle its buffers out-of-band under protocol 5"
    assert loads(encode_to_bytes(stream, buffers)).equals(table)


def test_write_object_rejects_small_or_readonly_destination():
    stream, buffers = dumps_oob(np.arange(100))
    size = encoded_size(len(stream), [b.raw().nbytes for b in buffers])
    with pytest.raises(ValueError, match="needs"):
        write_object(memoryview(bytearray(size - 1)), stream, buffers)
    with pytest.raises(ValueError, match="read-only"):
        write_object(memoryview(bytes(size)), stream, buffers)


def _corrupt(encoded: bytes, offset: int, fmt: str, value) -> bytes:
    out = bytearray(encoded)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda e: e[:10], "too short"),
        (lambda e: b"XOBJ" + e[4:], "bad magic"),
        (lambda e: _corrupt(e, 4, "<B", 9), "version"),
        (lambda e: _corrupt(e, 8, "<I", 10**6), "buffer table"),
        (lambda e: _corrupt(e, 12, "<Q", 10**9), "stream"),
        (lambda e: _corrupt(e, 20, "<Q", 65), "aligned"),
        (lambda e: _corrupt(e, 20, "<Q", 0), "overlaps"),
        (lambda e: _corrupt(e, 28, "<Q", 10**9), "past object end"),
        (lambda e: e[:-1], "past object end"),
    ],
)
def test_corrupt_headers_are_detected(mutate, message):
    encoded = encode_to_bytes(b"stream-bytes", [b"a" * 100, b"b" * 10])
    read_object(encoded)  # the original is valid
    with pytest.raises(CorruptObjectError, match=message):
        read_object(mutate(encoded))


def test_corrupt_object_error_is_a_value_error():
    with pytest.raises(ValueError):
        read_object(b"\0" * 64)


def test_large_buffers_are_placed_at_their_source_page_phase():
    import numpy as np
    big = np.arange(300_000, dtype=np.int64)[1:]      # starts 8 bytes into its allocation
    small = b"x" * 100
    stream, buffers = b"stream", [small, big]
    phases = layout.source_phases(buffers)
    assert phases[1] == big.ctypes.data % 4096
    size = layout.encoded_size(len(stream), [len(small), big.nbytes], phases)
    assert size <= layout.encoded_size(len(stream), [len(small), big.nbytes]) + 4096
    dest = memoryview(bytearray(size))
    layout.write_object(dest, stream, buffers, phases)
    got_stream, got = layout.read_object(dest)
    assert bytes(got_stream) == b"stream" and bytes(got[0]) == small
    assert np.array_equal(np.frombuffer(got[1], dtype=np.int64), big)
    offset = struct.unpack_from("<4Q", dest, 20)[2]     # second buffer's table offset
    assert offset % 4096 == phases[1]     # the source's own alignment, here 8 mod 64


def test_parallel_copy_of_a_large_buffer_is_exact():
    import numpy as np
    big = np.random.default_rng(1).integers(0, 255, (80 << 20) + 12345, dtype=np.uint8)
    size = layout.encoded_size(0, [big.nbytes])
    dest = memoryview(bytearray(size))
    layout.write_object(dest, b"", [big])
    _, got = layout.read_object(dest)
    assert np.array_equal(np.frombuffer(got[0], dtype=np.uint8), big)


@pytest.mark.parametrize("sizes", [
    [16 << 20] * 5 + [3 << 20],          # a restored object: 16 MiB chunks, a short last one
    [1 << 20, 70 << 20],                  # uneven: one piece alone is past a thread's share
    [4096, 100],                          # below the parallel threshold: copied in place
])
def test_copy_pieces_copies_every_piece_whatever_the_split(sizes):
    total = sum(sizes)
    source = np.random.default_rng(7).integers(0, 256, total, dtype=np.uint8)
    dest = bytearray(total)
    src_view, dest_view = memoryview(source).cast("B"), memoryview(dest)
    pieces, start = [], 0
    for size in sizes:
        pieces.append((dest_view[start:start + size], src_view[start:start + size]))
        start += size
    layout.copy_pieces(pieces)
    assert np.array_equal(np.frombuffer(dest, dtype=np.uint8), source)
