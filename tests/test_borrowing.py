"""Borrowing: refs nested in arguments keep their objects alive exactly as
long as the callee holds them (real processes; store usage observed through
the raylet's node stats, never by sleeping)."""
import numpy as np
import pytest

import zray
from zray.core import memory_view
from conftest import wait_for

pytestmark = pytest.mark.timeout(90)

MB = 1 << 20


def store_used():
    return memory_view.node_stats()["used_bytes"]


@zray.remote
class Keeper:
    def __init__(self):
        self.kept = None

    def keep(self, refs):
        self.kept = refs            # a list holding a ref we do not own

    def total(self):
        return float(zray.get(self.kept[0]).sum())

    def drop(self):
        self.kept = None

    def die(self):
        import os
        os._exit(1)


def test_actor_keeps_a_borrowed_object_alive_until_it_drops_it(cluster):
    wait_for(lambda: store_used() == 0, 10, "an empty store")
    keeper = Keeper.remote()
    ref = zray.put(np.ones(2 * MB // 8))
    zray.get(keeper.keep.remote([ref]))
    del ref                                    # the driver (owner) lets go
    assert zray.get(keeper.total.remote(), timeout=30) == 2 * MB // 8
    assert store_used() > 0
    zray.get(keeper.drop.remote())             # the borrower lets go: freed
    wait_for(lambda: store_used() == 0, 10, "the store to empty after the borrower dropped it")


def test_task_that_does_not_keep_the_ref_is_not_a_borrower(cluster):
    @zray.remote
    def peek(refs):
        return float(zray.get(refs[0]).sum())

    wait_for(lambda: store_used() == 0, 10, "an empty store")
    ref = zray.put(np.ones(MB // 8))
    assert zray.get(peek.remote([ref]), timeout=30) == MB // 8
    del ref
    wait_for(lambda: store_used() == 0, 10, "the store to empty")


def test_dead_borrower_no_longer_pins_the_object(cluster):
    wait_for(lambda: store_used() == 0, 10, "an empty store")
    keeper = Keeper.remote()
    ref = zray.put(np.ones(MB // 8))
    zray.get(keeper.keep.remote([ref]))
    del ref
    assert store_used() > 0
    keeper.die.remote()
    wait_for(lambda: store_used() == 0, 15, "the store to empty after the borrower died")


def test_ref_passed_on_by_a_borrower_stays_readable(cluster):
    """A borrower that hands the ref to a third process keeps it pinned
    (borrowers of borrowers are tracked conservatively for now)."""
    @zray.remote
    def hand_on(refs, keeper):
        zray.get(keeper.keep.remote(refs))

    keeper = Keeper.remote()
    ref = zray.put(np.ones(MB // 8))
    zray.get(hand_on.remote([ref], keeper), timeout=30)
    del ref
    assert zray.get(keeper.total.remote(), timeout=30) == MB // 8


def test_ref_captured_in_a_remote_function_stays_pinned(cluster):
    box = [zray.put(np.arange(MB // 8))]      # the definition captures the list's ref

    @zray.remote
    def total_of_captured():
        return float(zray.get(box[0]).sum())

    expected = float(np.arange(MB // 8).sum())
    assert zray.get(total_of_captured.remote(), timeout=30) == expected
    object_id = box[0].binary()
    box.clear()         # the driver's own ref is gone; the exported definition keeps one
    summary = memory_view.local_object_summary()
    pinned = [o for o in summary["objects"] if o["object_id"] == object_id.hex()]
    assert pinned and pinned[0]["pinned"]
    assert zray.get(total_of_captured.remote(), timeout=30) == expected
