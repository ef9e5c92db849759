"""The LMDB spill store on its own: chunking, growth, delete."""
import os

import pytest

from zray.store import spill


def test_round_trip_chunked_and_growing(tmp_path, monkeypatch):
    monkeypatch.setattr(spill, "CHUNK_BYTES", 1 << 16)
    store = spill.SpillStore(str(tmp_path / "spill"), map_size=1 << 20)   # grows
    payload = os.urandom(3 << 20)
    store.put(b"a" * 20, memoryview(payload))
    assert store.size(b"a" * 20) == len(payload)
    dest = bytearray(len(payload))
    assert store.read_into(b"a" * 20, memoryview(dest)) == len(payload)
    assert bytes(dest) == payload
    assert store.num_objects == 1 and store.bytes == len(payload)
    assert store.delete(b"a" * 20)
    assert store.size(b"a" * 20) is None and store.bytes == 0
    assert not store.delete(b"a" * 20)
    with pytest.raises(KeyError):
        store.read_into(b"a" * 20, memoryview(dest))
    store.close()
