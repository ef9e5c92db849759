"""Python GC across the node (zray/node/gc_trigger.py): objects and actors
kept alive only by reference cycles are freed when the store fills, when
requests wait on resources such garbage holds, and on global_gc()."""
import gc
import math
import time
import weakref

import numpy as np
import pytest

import zray
from zray.core import memory_view
from zray.node.gc_trigger import GcTrigger, gc_config
from conftest import wait_for

pytestmark = pytest.mark.timeout(90)

MB = 1 << 20


class Cycle:
    def __init__(self, payload=None):
        self.loop = self
        self.payload = payload


@zray.remote(num_cpus=0)
class GarbageHolder:
    """Makes garbage its own collector never frees (gc disabled)."""

    def __init__(self):
        gc.disable()
        self.collections = 0
        gc.callbacks.append(self._count)
        self.garbage = []

    def _count(self, phase, info):
        if phase == "stop":
            self.collections += 1

    def make_cycle(self, mb=0):
        payload = zray.put(np.ones(mb * MB, dtype=np.uint8)) if mb else None
        self.garbage.append(weakref.ref(Cycle(payload)))

    def garbage_alive(self):
        return sum(ref() is not None for ref in self.garbage)

    def collections_seen(self):
        return self.collections


@pytest.fixture()
def gc_disabled():
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_global_gc_collects_in_the_driver_and_every_worker(no_cluster, gc_disabled):
    zray.init(num_cpus=2)
    local = weakref.ref(Cycle())
    holders = [GarbageHolder.remote() for _ in range(2)]
    zray.get([h.make_cycle.remote() for h in holders])
    assert local() is not None
    assert zray.get([h.garbage_alive.remote() for h in holders]) == [1, 1]

    zray._private.internal_api.global_gc()

    wait_for(lambda: local() is None and zray.get([h.garbage_alive.remote() for h in holders]) == [0, 0],
             10, "cyclic garbage collected in the driver and both actors")


def test_a_filling_store_triggers_gc_that_frees_the_cycles_objects(no_cluster):
    """As Ray's test_auto_global_gc: 60% full collects nothing, past 70% the
    node collects and the objects the cycles pinned leave the store."""
    zray.init(num_cpus=1, object_store_memory=100 * MB)
    holder = GarbageHolder.remote()
    zray.get([holder.make_cycle.remote(20) for _ in range(3)])
    time.sleep(1.0)
    assert zray.get(holder.collections_seen.remote()) == 0
    assert memory_view.node_stats()["used_bytes"] >= 60 * MB

    # 80%: past high_plasma_storage_usage.  (Put here, not by the actor: a
    # collection that ran inside make_cycle would miss the cycle it makes.)
    mine = zray.put(np.ones(20 * MB, dtype=np.uint8))

    wait_for(lambda: zray.get(holder.collections_seen.remote()) >= 1, 10, "a collection in the actor")
    assert zray.get(holder.garbage_alive.remote()) == 0
    wait_for(lambda: memory_view.node_stats()["used_bytes"] <= 20 * MB + (1 << 16), 10,
             "the cycles' objects freed")
    del mine
    wait_for(lambda: memory_view.node_stats()["used_bytes"] == 0, 10, "the store emptied")


def test_an_actor_kept_alive_by_a_cycle_is_collected_when_its_resources_are_needed(
        no_cluster, gc_disabled):
    """As Ray's test_global_gc_actors: one CPU, each actor needs it; the
    previous one lives on only in a cycle in the driver."""
    zray.init(num_cpus=1)

    @zray.remote(num_cpus=1)
    class Worker:
        def f(self):
            return "ok"

    for _ in range(2):
        actor = Worker.remote()
        cycle = [actor]
        cycle.append(cycle)
        assert zray.get(actor.f.remote(), timeout=30) == "ok"
        del actor, cycle


def test_gc_knobs_are_rays_config_names_and_bad_values_are_refused(no_cluster):
    with pytest.raises(ValueError, match="high_plasma_storage_usage must be a number"):
        zray.init(num_cpus=1, _system_config={"high_plasma_storage_usage": "lots"})
    assert not zray.is_initialized()
    assert gc_config({"local_gc_min_interval_s": 3})["local_gc_min_interval_s"] == 3.0


def test_trigger_throttles_automatic_collections_but_not_requests():
    config = gc_config({})
    trigger = GcTrigger(config, now=0.0)
    assert not trigger.due(1.0, 0.5)                 # nothing asked, store 50%
    assert trigger.due(2.0, 0.8)                     # past 70%: the first one runs at once
    assert not trigger.due(2.1, 0.8)                 # usage trigger waits global_gc_min_interval_s
    trigger.request()                                # e.g. a create waiting for space
    assert not trigger.due(5.0, 0.5)                 # held back: local_gc_min_interval_s
    assert trigger.due(12.0, 0.5)                    # ...not dropped
    trigger.request(explicit=True)
    assert trigger.due(12.5, 0.5)                    # global_gc() runs at once
    assert trigger.due(12.0 + config["local_gc_interval_s"] + 1, 0.0)   # periodic
    assert trigger.collections == 4
    assert math.isinf(GcTrigger(config, 0.0).last_collect)
