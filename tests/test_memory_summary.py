"""`zray memory` / zray.util.memory_summary(): one row per object with its
size, owner, location and every reference to it by kind (real processes)."""
import os

import numpy as np
import pytest

import zray
from zray.util import memory_summary
from conftest import Signal, wait_for

pytestmark = pytest.mark.timeout(90)

MB = 1 << 20


def _row(object_id_hex):
    for row in memory_summary(as_dict=True)["objects"]:
        if row["object_id"] == object_id_hex:
            return row
    return None


def _kinds(row):
    return {(r["kind"], r["pid"]) for r in row["references"]}


@zray.remote
class Keeper:
    def keep(self, refs):
        self.refs = refs
        return os.getpid()


def test_store_returns_to_its_starting_level_within_a_second(cluster):
    """Issue 3: after a job drops its refs (including ones a task and an actor
    borrowed, and values it read), the store is back where it started within
    a second, seen through the public memory summary.  First in this module,
    so no earlier test's objects are still being freed."""
    def used():
        return memory_summary(as_dict=True)["nodes"][0]["used_bytes"]

    start = used()

    @zray.remote
    def total(arrays):
        return float(sum(zray.get(a).sum() for a in arrays))

    refs = [zray.put(np.ones(MB // 8)) for _ in range(8)]
    assert zray.get(total.remote(refs), timeout=30) == 8 * (MB // 8)
    keeper = Keeper.remote()
    zray.get(keeper.keep.remote(refs[:2]), timeout=30)
    views = [zray.get(r) for r in refs]
    assert used() >= start + 8 * MB
    del views, refs
    zray.kill(keeper)
    wait_for(lambda: used() == start, 1.0, "the store to return to its starting level")


def test_local_borrowed_pinned_by_task_and_captured(cluster):
    me = os.getpid()
    big = zray.put(np.ones(MB // 8))
    row = _row(big.hex())
    assert row["owner_pid"] == me and row["where"].startswith("shm on node")
    assert row["size"] >= MB and ("local", me) in _kinds(row)

    keeper = Keeper.remote()
    keeper_pid = zray.get(keeper.keep.remote([big]), timeout=30)
    assert ("borrowed", keeper_pid) in _kinds(_row(big.hex()))

    small = zray.put("a small value")
    signal = Signal.remote()

    @zray.remote
    def wait_then_use(value, sig):
        zray.get(sig.wait.remote())
        return len(value)

    pending = wait_then_use.remote(small, signal)    # held by a task that has not finished
    row = _row(small.hex())
    assert row["where"] == f"in-process (pid {me})" and ("pinned by task", me) in _kinds(row)
    zray.get(signal.send.remote())
    assert zray.get(pending, timeout=30) == len("a small value")
    wait_for(lambda: ("pinned by task", me) not in _kinds(_row(small.hex())), 10,
             "the finished task to release its argument")

    box = [zray.put(7)]

    @zray.remote
    def read_captured():
        return zray.get(box[0])

    assert zray.get(read_captured.remote(), timeout=30) == 7
    assert ("captured", me) in _kinds(_row(box[0].hex()))


def test_summary_lists_node_totals_and_processes(cluster):
    ref = zray.put(np.zeros(MB, dtype=np.uint8))
    summary = memory_summary(as_dict=True)
    node = summary["nodes"][0]
    assert node["used_bytes"] >= MB and node["capacity"] > node["used_bytes"]
    for key in ("spilled_objects_total", "spilled_bytes_total", "restored_objects_total",
                "restored_bytes_total"):
        assert key in node
    assert os.getpid() in {p["pid"] for p in summary["processes"]}
    text = memory_summary()
    assert ref.hex() in text and "shm on node" in text and f"local (pid {os.getpid()})" in text
    assert memory_summary(stats_only=True).startswith("node ")
