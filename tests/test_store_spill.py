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


def test_reads_on_another_thread_survive_map_growth(tmp_path, monkeypatch):
    """The raylet restores on one thread while it spills on another; growing
    the map must wait for reads in flight (LMDB forbids resizing under them)."""
    import threading
    monkeypatch.setattr(spill, "CHUNK_BYTES", 1 << 16)
    store = spill.SpillStore(str(tmp_path / "spill"), map_size=1 << 20)
    payload = os.urandom(1 << 19)
    store.put(b"r" * 20, memoryview(payload))
    errors, done = [], threading.Event()

    def read_forever():
        dest = bytearray(len(payload))
        while not done.is_set():
            try:
                store.read_into(b"r" * 20, memoryview(dest))
                assert bytes(dest) == payload
            except Exception as exc:   # any failure is the bug under test
                errors.append(exc)
                return

    reader = threading.Thread(target=read_forever)
    reader.start()
    try:
        for i in range(40):                          # ~20 MB: several doublings
            store.put(i.to_bytes(20, "little"), memoryview(payload))
    finally:
        done.set()
        reader.join(10)
    assert not errors, errors[0]
    store.close()
