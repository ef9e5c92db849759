"""zray.util.state: Ray's state API over the GCS tables and the raylet
(actors, nodes, placement groups, jobs, workers, objects), real processes."""
from __future__ import annotations

import os

import pytest

import zray
from zray.util import state
from zray.util.placement_group import placement_group, remove_placement_group

CLUSTER = dict(num_cpus=2)

pytestmark = pytest.mark.timeout(60)


@zray.remote
class Listed:
    def pid(self):
        return os.getpid()


def test_actors_nodes_jobs_and_workers(cluster):
    actor = Listed.options(name="listed-one").remote()
    pid = zray.get(actor.pid.remote(), timeout=30)
    mine = [a for a in state.list_actors() if a.name == "listed-one"]
    assert len(mine) == 1
    row = mine[0]
    assert (row.class_name, row.state, row.pid, row["state"]) == ("Listed", "ALIVE", pid, "ALIVE")
    assert state.get_actor(row.actor_id).name == "listed-one"
    zray.kill(actor)
    dead = state.list_actors(filters=[("name", "=", "listed-one"), ("state", "=", "DEAD")])
    assert len(dead) == 1 and "killed" in dead[0].death_cause["message"]
    nodes = state.list_nodes()
    assert [n.state for n in nodes] == ["ALIVE"]
    assert nodes[0].node_id == zray.get_runtime_context().get_node_id()
    jobs = state.list_jobs()
    assert any(j.driver_pid == os.getpid() and j.status == "RUNNING" for j in jobs)
    assert state.get_job(zray.get_runtime_context().get_job_id()).driver_pid == os.getpid()
    workers = state.list_workers()
    assert any(w.worker_type == "DRIVER" and w.pid == os.getpid() for w in workers)
    assert len(state.list_workers(limit=1)) == 1


def test_placement_groups_and_objects(cluster):
    pg = placement_group([{"CPU": 1}], name="listed-pg")
    assert pg.wait(20)
    row = state.get_placement_group(pg.id.hex())
    assert (row.name, row.state) == ("listed-pg", "CREATED")
    assert row.bundles[0]["unit_resources"] == {"CPU": 1.0} and row.bundles[0]["node_id"]
    remove_placement_group(pg)
    ref = zray.put(b"x" * 200_000)
    rows = state.list_objects(filters=[("object_id", "=", ref.hex())])
    assert rows and rows[0].object_size >= 200_000
    assert rows[0].reference_type == "LOCAL_REFERENCE" and rows[0].pid == os.getpid()


def test_unsupported_listings_and_filters_say_so(cluster):
    with pytest.raises(NotImplementedError, match="task events"):
        state.list_tasks()
    with pytest.raises(ValueError, match="predicate"):
        state.list_nodes(filters=[("state", ">", "x")])
    with pytest.raises(ValueError, match="not a field"):
        state.list_nodes(filters=[("nope", "=", "x")])
