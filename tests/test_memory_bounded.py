"""Long-running drivers stay bounded: dropped refs free their entries."""
import gc

import psutil
import pytest

import zray
from zray.core import memory_view
from conftest import wait_for

pytestmark = pytest.mark.timeout(120)


def owned_objects():
    return memory_view.local_object_summary()["num_owned"]


def test_100k_small_puts_keep_driver_memory_bounded(cluster):
    process = psutil.Process()
    for _ in range(5_000):                     # warm up allocator and caches
        zray.put(b"x" * 64)
    gc.collect()
    before_rss = process.memory_info().rss
    before_objects = owned_objects()
    for i in range(100_000):
        zray.put(i)
    gc.collect()
    wait_for(lambda: owned_objects() <= before_objects, 10, "dropped puts to be freed")
    assert process.memory_info().rss - before_rss < 50 * 2**20


def test_object_holding_10k_refs_frees_them_with_it(cluster):
    baseline = owned_objects()
    outer = zray.put([zray.put(i) for i in range(10_000)])
    assert owned_objects() >= baseline + 10_001
    inner = zray.get(outer)
    assert zray.get(inner[1234]) == 1234
    del outer, inner
    gc.collect()
    wait_for(lambda: owned_objects() <= baseline, 10, "the inner refs to be freed with the outer")
