"""zray.util.state: Ray's state API over the GCS tables and the raylet
(actors, nodes, placement groups, jobs, workers, objects), real processes."""
from __future__ import annotations

import os

import pytest

import zray
from zray.util import state
from zray.util.placement_group import placement_group, remove_placement_group
from conftest import wait_for

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


@zray.remote
def listed_task(x):
    return x


@zray.remote
def listed_failure():
    raise KeyError("listed")


@zray.remote
class ListedCalls:
    def call(self):
        return os.getpid()


def test_tasks_are_listed_from_task_events(cluster, tmp_path):
    assert zray.get([listed_task.remote(i) for i in range(3)], timeout=30) == [0, 1, 2]
    with pytest.raises(KeyError):
        zray.get(listed_failure.remote(), timeout=30)
    actor = ListedCalls.remote()
    actor_pid = zray.get(actor.call.remote(), timeout=30)

    def tasks_named(name, count=1):
        """The tasks called ``name`` once every process's events arrived
        (each sends them about once a second)."""
        def ended():
            rows = state.list_tasks(filters=[("name", "=", name)], detail=True, limit=1000)
            if len(rows) >= count and all(r.state in ("FINISHED", "FAILED") for r in rows):
                return rows
        return wait_for(ended, 15, f"the events of {name}")

    done = tasks_named("listed_task", 3)
    assert len(done) >= 3 and {t.state for t in done} == {"FINISHED"}
    first = done[0]
    assert first.type == "NORMAL_TASK" and first.worker_pid and first.node_id
    assert first.creation_time_ms <= first.start_time_ms <= first.end_time_ms
    assert [e["state"] for e in first.events] == ["PENDING_NODE_ASSIGNMENT", "RUNNING", "FINISHED"]
    assert first.job_id == zray.get_runtime_context().get_job_id()
    [failed] = tasks_named("listed_failure")
    assert failed.state == "FAILED" and failed.error_type == "TASK_EXECUTION_EXCEPTION"
    assert "listed" in failed.error_message
    [creation] = tasks_named("ListedCalls.__init__")
    assert creation.type == "ACTOR_CREATION_TASK"
    [call] = tasks_named("ListedCalls.call")
    assert (call.type, call.state, call.worker_pid) == ("ACTOR_TASK", "FINISHED", actor_pid)
    assert state.get_task(first.task_id).name == "listed_task"
    summary = state.summarize_tasks()["cluster"]["summary"]
    assert summary["listed_failure"]["state_counts"] == {"FAILED": 1}
    trace = zray.timeline()
    spans = [e for e in trace if e["name"] == "task::listed_task"]
    assert len(spans) >= 3 and all(e["ph"] == "X" and e["dur"] >= 0 for e in spans)
    path = tmp_path / "trace.json"
    zray.timeline(str(path))
    assert "task::ListedCalls.call" in path.read_text()


def test_a_task_whose_worker_dies_is_listed_failed(cluster):
    @zray.remote(max_retries=0)
    def dies():
        os._exit(1)

    with pytest.raises(zray.exceptions.WorkerCrashedError):
        zray.get(dies.remote(), timeout=30)
    [row] = wait_for(lambda: [r for r in state.list_tasks(limit=1000)
                              if r.name.endswith("dies") and r.state == "FAILED"],
                     15, "the dead worker's task to be listed as failed")
    assert row.error_type == "WORKER_DIED"


def test_bad_filters_say_so(cluster):
    with pytest.raises(ValueError, match="predicate"):
        state.list_nodes(filters=[("state", ">", "x")])
    with pytest.raises(ValueError, match="not a field"):
        state.list_nodes(filters=[("nope", "=", "x")])
