"""Placement groups and scheduling strategies end to end (real GCS, raylet
and workers): reservation, tasks and actors in bundles, capture, removal,
pending groups, GPU devices in bundles, node affinity, and Ray's errors."""
from __future__ import annotations

import os
import time

import pytest

import zray
from zray.util.placement_group import (get_current_placement_group, get_placement_group,
                                       placement_group, placement_group_table,
                                       remove_placement_group)
from zray.util.scheduling_strategies import (NodeAffinitySchedulingStrategy,
                                             PlacementGroupSchedulingStrategy)
from conftest import pid_running, wait_for

CLUSTER = dict(num_cpus=4, num_gpus=2, resources={"custom": 2})

pytestmark = pytest.mark.timeout(90)


@zray.remote
def where():
    return (get_current_placement_group(),
            zray.get_runtime_context().get_assigned_resources(),
            zray.get_gpu_ids())


@zray.remote
def hold(seconds):
    """(start, end) on the host's monotonic clock; no get inside, so the task
    keeps its CPU the whole time (a task blocked in get lends it out)."""
    start = time.monotonic()
    time.sleep(seconds)
    return start, time.monotonic()


@zray.remote(num_cpus=0)
def parent_task():
    return zray.get(where.remote())


@zray.remote
class InGroup:
    def group(self):
        return get_current_placement_group()

    def pid(self):
        return os.getpid()


@zray.remote
class GroupMaker:
    def make(self, name, detached):
        pg = placement_group([{"CPU": 0.5}], name=name,
                             lifetime="detached" if detached else None)
        zray.get(pg.ready(), timeout=20)
        return pg


def _in(pg, index=-1, capture=None):
    return PlacementGroupSchedulingStrategy(pg, index, capture)


def _group_resources():
    return {k: v for k, v in zray.available_resources().items() if "_group_" in k}


def _remove_and_wait(pg):
    remove_placement_group(pg)
    wait_for(lambda: not _group_resources(), 10, "the group's resources to go")


def test_a_group_reserves_its_bundles_as_ray_named_resources(cluster):
    pg = placement_group([{"CPU": 1}, {"CPU": 2, "custom": 1}], strategy="PACK", name="pg-a")
    assert zray.get(pg.ready(), timeout=20) == pg
    assert pg.wait(5) and pg.bundle_count == 2
    assert pg.bundle_specs == [{"CPU": 1.0}, {"CPU": 2.0, "custom": 1.0}]
    h = pg.id.hex()
    available = zray.available_resources()
    assert available["CPU"] == 1.0 and available["custom"] == 1.0
    assert available[f"CPU_group_0_{h}"] == 1.0 and available[f"CPU_group_1_{h}"] == 2.0
    assert available[f"CPU_group_{h}"] == 3.0 and available[f"custom_group_{h}"] == 1.0
    assert available[f"bundle_group_{h}"] == 2000.0
    table = placement_group_table(pg)
    assert table["state"] == "CREATED" and table["strategy"] == "PACK" and table["name"] == "pg-a"
    assert table["bundles"] == {0: {"CPU": 1.0}, 1: {"CPU": 2.0, "custom": 1.0}}
    assert set(table["bundles_to_node_id"].values()) == {zray.get_runtime_context().get_node_id()}
    assert get_placement_group("pg-a") == pg and h in placement_group_table()
    _remove_and_wait(pg)
    assert placement_group_table(pg)["state"] == "REMOVED"
    assert zray.available_resources()["CPU"] == 4.0


def test_tasks_and_actors_run_in_their_bundle(cluster):
    pg = placement_group([{"CPU": 1}, {"CPU": 1, "custom": 1}])
    zray.get(pg.ready(), timeout=20)
    group, assigned, _ = zray.get(where.options(scheduling_strategy=_in(pg, 1)).remote(), timeout=30)
    assert group == pg and assigned == {"CPU": 1.0}   # Ray reports the plain names
    group, _, _ = zray.get(where.options(scheduling_strategy=_in(pg)).remote(), timeout=30)
    assert group == pg
    # The older options name the group too.
    group, _, _ = zray.get(where.options(placement_group=pg, placement_group_bundle_index=0)
                           .remote(), timeout=30)
    assert group == pg
    assert zray.get(where.remote(), timeout=30)[0] is None
    actor = InGroup.options(scheduling_strategy=_in(pg, 0)).remote()
    assert zray.get(actor.group.remote(), timeout=30) == pg
    assert get_current_placement_group() is None        # the driver is in no group
    zray.kill(actor)
    _remove_and_wait(pg)


def test_a_bundle_runs_no_more_than_it_holds(cluster):
    pg = placement_group([{"CPU": 1}])
    zray.get(pg.ready(), timeout=20)
    spans = sorted(zray.get([hold.options(scheduling_strategy=_in(pg, 0)).remote(0.3)
                             for _ in range(3)], timeout=60))
    assert all(earlier[1] <= later[0] for earlier, later in zip(spans, spans[1:])), spans
    _remove_and_wait(pg)


def test_reserved_resources_are_not_given_to_other_work(cluster):
    pg = placement_group([{"CPU": 3}])
    zray.get(pg.ready(), timeout=20)
    outside = where.options(num_cpus=2).remote()
    ready, _ = zray.wait([outside], timeout=1.0)
    assert not ready     # only 1 CPU is left outside the group
    _remove_and_wait(pg)
    assert zray.get(outside, timeout=30)[0] is None


def test_child_tasks_join_the_group_only_when_captured(cluster):
    pg = placement_group([{"CPU": 2}])
    zray.get(pg.ready(), timeout=20)
    captured = parent_task.options(scheduling_strategy=_in(pg, capture=True)).remote()
    assert zray.get(captured, timeout=30)[0] == pg
    free = parent_task.options(scheduling_strategy=_in(pg)).remote()
    assert zray.get(free, timeout=30)[0] is None
    _remove_and_wait(pg)


def test_a_group_that_does_not_fit_stays_pending_until_room_appears(cluster):
    big = placement_group([{"CPU": 3}])
    zray.get(big.ready(), timeout=20)
    waiting = placement_group([{"CPU": 2}], strategy="STRICT_PACK")
    assert not waiting.wait(0.5)
    with pytest.raises(zray.exceptions.GetTimeoutError):
        zray.get(waiting.ready(), timeout=0.5)
    assert placement_group_table(waiting)["state"] == "PENDING"
    ready = waiting.ready()
    remove_placement_group(big)
    assert zray.get(ready, timeout=20) == waiting
    _remove_and_wait(waiting)


def test_strict_spread_cannot_be_placed_on_one_node(cluster, capfd):
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
    assert not pg.wait(0.5)
    ready = pg.ready()
    remove_placement_group(pg)
    with pytest.raises(zray.exceptions.RaySystemError, match="removed"):
        zray.get(ready, timeout=20)
    spread = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="SPREAD")
    assert spread.wait(20)      # SPREAD is best effort: both on the one node
    _remove_and_wait(spread)


def test_removing_a_group_ends_what_runs_in_it(cluster):
    pg = placement_group([{"CPU": 1}, {"CPU": 1}])
    zray.get(pg.ready(), timeout=20)
    actor = InGroup.options(scheduling_strategy=_in(pg, 0)).remote()
    pid = zray.get(actor.pid.remote(), timeout=30)
    running = hold.options(scheduling_strategy=_in(pg, 1), max_retries=0).remote(60)
    time.sleep(0.5)
    remove_placement_group(pg)
    with pytest.raises(zray.exceptions.RayActorError, match="placement group was removed"):
        zray.get(actor.pid.remote(), timeout=20)
    with pytest.raises(zray.exceptions.WorkerCrashedError):
        zray.get(running, timeout=20)
    wait_for(lambda: not pid_running(pid), 10, "the group's actor to exit")
    wait_for(lambda: not _group_resources() and zray.available_resources()["CPU"] >= 3, 10,
             "the bundles to come back")


def test_a_group_goes_with_the_actor_that_created_it_unless_detached(cluster):
    maker = GroupMaker.remote()
    owned = zray.get(maker.make.remote("made-owned", False), timeout=30)
    kept = zray.get(maker.make.remote("made-detached", True), timeout=30)
    zray.kill(maker)
    wait_for(lambda: placement_group_table(owned)["state"] == "REMOVED", 10,
             "the actor's group to be removed")
    assert placement_group_table(kept)["state"] == "CREATED"
    _remove_and_wait(kept)


def test_gpu_bundles_hand_their_own_devices_to_their_tasks(cluster):
    pg = placement_group([{"CPU": 1, "GPU": 1}, {"CPU": 1, "GPU": 1}])
    zray.get(pg.ready(), timeout=20)
    first = zray.get(where.options(num_gpus=1, scheduling_strategy=_in(pg, 0)).remote(), timeout=30)
    second = zray.get(where.options(num_gpus=1, scheduling_strategy=_in(pg, 1)).remote(), timeout=30)
    assert len(first[2]) == 1 and len(second[2]) == 1 and first[2] != second[2]
    outside = where.options(num_gpus=1).remote()
    assert not zray.wait([outside], timeout=1.0)[0]   # both devices are reserved
    _remove_and_wait(pg)
    assert len(zray.get(outside, timeout=30)[2]) == 1


def test_bad_groups_and_strategies_are_refused_like_ray(cluster):
    for bundles, words in [([], "non-empty"), ([{}], "empty dictionary"),
                           ([{"CPU": 0}], "only 0 values"), ("x", "must be a list"),
                           ([{"CPU": "1"}], "resource dictionaries"),
                           ([{"bundle": 1}], "reserved resource name")]:
        with pytest.raises(ValueError, match=words):
            placement_group(bundles)
    with pytest.raises(ValueError, match="Invalid placement group strategy"):
        placement_group([{"CPU": 1}], strategy="X")
    with pytest.raises(ValueError, match="lifetime"):
        placement_group([{"CPU": 1}], lifetime="forever")
    pg = placement_group([{"CPU": 1}], name="taken")
    with pytest.raises(ValueError, match="already taken"):
        placement_group([{"CPU": 1}], name="taken")
    with pytest.raises(ValueError, match="bundle index 5 is invalid"):
        where.options(scheduling_strategy=_in(pg, 5)).remote()
    with pytest.raises(ValueError, match="cannot fit into any bundles"):
        where.options(num_cpus=2, scheduling_strategy=_in(pg)).remote()
    cpu_less = placement_group([{"custom": 1}])
    with pytest.raises(ValueError, match="cannot fit into any bundles"):   # needs 1 CPU to place
        InGroup.options(scheduling_strategy=_in(cpu_less)).remote()
    with pytest.raises(ValueError, match="cannot fit into any bundles"):   # still 1 CPU to place
        InGroup.options(resources={"custom": 1}, scheduling_strategy=_in(cpu_less)).remote()
    zero = InGroup.options(num_cpus=0, resources={"custom": 1},      # placed with no CPU
                           scheduling_strategy=_in(cpu_less)).remote()
    assert zray.get(zero.group.remote(), timeout=30) == cpu_less
    zray.kill(zero)
    remove_placement_group(cpu_less)
    with pytest.raises(ValueError, match="Invalid scheduling_strategy value BOGUS"):
        where.options(scheduling_strategy="BOGUS").remote()
    with pytest.raises(ValueError, match="Failed to look up placement group"):
        get_placement_group("no-such-group")
    _remove_and_wait(pg)


def test_node_affinity_runs_on_the_node_or_fails_when_it_is_gone(cluster):
    node = zray.get_runtime_context().get_node_id()
    assert zray.get(where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        node, soft=False)).remote(), timeout=30)[1] == {"CPU": 1.0}
    gone = "ab" * 16
    with pytest.raises(zray.exceptions.TaskUnschedulableError, match="soft=False"):
        zray.get(where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
            gone, soft=False)).remote(), timeout=30)
    assert zray.get(where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        gone, soft=True)).remote(), timeout=30)[1] == {"CPU": 1.0}
    actor = InGroup.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        gone, soft=False)).remote()
    with pytest.raises(zray.exceptions.RayActorError, match="NodeAffinitySchedulingStrategy"):
        zray.get(actor.pid.remote(), timeout=30)
    placed = InGroup.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        node, soft=False)).remote()
    assert zray.get(placed.pid.remote(), timeout=30) > 0
    with pytest.raises(ValueError, match="Invalid node_id"):
        NodeAffinitySchedulingStrategy("not-hex", soft=False)


def test_a_raylet_told_which_bundles_to_keep_returns_the_others(cluster):
    """What a restarted GCS sends each raylet (ReleaseUnusedBundles), sent here
    over the raylet's own socket: kept bundles stay, the others come back."""
    from zray.core.process_state import worker
    from zray.sockets import messages as m, transport

    kept = placement_group([{"CPU": 1}])
    dropped = placement_group([{"CPU": 1}, {"CPU": 1}])
    assert kept.wait(20) and dropped.wait(20)
    cpus_before = zray.available_resources().get("CPU", 0)   # less any idle leases held
    kept_names = {f"{name}_group{index}{kept.id.hex()}"
                  for name in ("CPU", "bundle") for index in ("_", "_0_")}
    raylet = transport.dealer()
    try:
        raylet.connect("ipc://" + os.path.join(worker.session_dir, "sockets", "raylet"))
        raylet.send(m.encode(m.ReleaseUnusedBundles(((kept.id.binary(), 0),))))
        wait_for(lambda: set(_group_resources()) == kept_names, 10,
                 "only the kept group's resources to remain")
        wait_for(lambda: zray.available_resources().get("CPU", 0) >= cpus_before + 2, 10,
                 "the unknown group's CPUs to come back")
    finally:
        raylet.close(linger=1000)
    _remove_and_wait(kept)
    remove_placement_group(dropped)


def test_work_submitted_before_the_group_is_placed_waits_for_it_quietly(cluster, capfd):
    pg = placement_group([{"CPU": 1}])
    early = where.options(scheduling_strategy=_in(pg, 0)).remote()   # no ready() first
    assert zray.get(early, timeout=30)[0] == pg
    assert "zray warning" not in capfd.readouterr().err
    _remove_and_wait(pg)
