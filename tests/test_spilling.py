"""Spilling: more data than the store holds, every object back byte-exact,
spill observed in node stats, and everything freed when refs are dropped."""
import numpy as np
import pytest

import zray
from zray.core import memory_view
from conftest import small_store_cluster, wait_for

pytestmark = pytest.mark.timeout(120)

MB = 1 << 20


@pytest.fixture()
def small_store(no_cluster):
    with small_store_cluster(100, 2):
        yield


def test_three_times_capacity_round_trips_and_frees(small_store):
    refs = [zray.put(np.full(30 * MB, i, dtype=np.uint8)) for i in range(10)]   # 300 MB
    stats = memory_view.node_stats()
    assert stats["spilled_objects_total"] > 0 and stats["spilled_objects"] > 0
    for i, ref in enumerate(refs):
        value = zray.get(ref)
        assert value.shape == (30 * MB,) and int(value[0]) == i and int(value[-1]) == i
        assert int(value.sum()) == i * 30 * MB
        del value                     # let the store unpin it, so it can be spilled again
    assert memory_view.node_stats()["restored_objects_total"] > 0
    del refs, ref
    wait_for(lambda: (lambda s: s["used_bytes"] == 0 and s["spilled_objects"] == 0)(
        memory_view.node_stats()), 15, "store and spill store to empty")


def test_spilled_object_passed_to_a_task(small_store):
    @zray.remote
    def first_byte(arr):
        return int(arr[0])

    refs = [zray.put(np.full(30 * MB, i, dtype=np.uint8)) for i in range(5)]
    assert memory_view.node_stats()["spilled_objects"] > 0
    assert zray.get([first_byte.remote(r) for r in refs], timeout=60) == [0, 1, 2, 3, 4]


def test_restore_without_room_raises_object_store_full(small_store):
    refs = [zray.put(np.full(30 * MB, i, dtype=np.uint8)) for i in range(4)]
    held = [zray.get(r) for r in refs[1:]]      # 90 MB pinned by our views
    with pytest.raises(zray.exceptions.ObjectStoreFullError, match="cannot be restored"):
        zray.get(refs[0])
    del held
    assert int(zray.get(refs[0])[0]) == 0       # room again once the views are gone


def test_memory_summary_reports_spilling(small_store):
    from zray.core.memory_view import format_summary
    refs = [zray.put(np.full(30 * MB, i, dtype=np.uint8)) for i in range(5)]
    text = format_summary(memory_view.node_stats())
    assert "spilled now:" in text and "spilled now: 0 object" not in text
    del refs
