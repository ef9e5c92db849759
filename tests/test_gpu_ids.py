"""GPU devices per lease: get_gpu_ids() and CUDA_VISIBLE_DEVICES, as Ray
sets them (the cluster declares 2 GPUs; nothing here touches a real GPU)."""
from __future__ import annotations

import os

import pytest

import zray
from zray.node.gpu_ids import GpuInstances
from zray.node.resources import UNIT
from conftest import Barrier

CLUSTER = dict(num_cpus=4, num_gpus=2)

pytestmark = pytest.mark.timeout(60)


@zray.remote
def devices(barrier=None):
    if barrier is not None:
        zray.get(barrier.arrive.remote())   # hold the devices until every task has some
    return zray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")


@zray.remote(num_gpus=1)
class GpuActor:
    def devices(self):
        return zray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")


def test_concurrent_one_gpu_tasks_get_different_devices(cluster):
    barrier = Barrier.remote(2)
    results = zray.get([devices.options(num_gpus=1).remote(barrier) for _ in range(2)], timeout=30)
    ids = sorted(r[0][0] for r in results)
    assert ids == [0, 1]
    for gpu_ids, visible in results:
        assert visible == ",".join(map(str, gpu_ids))


def test_two_gpu_task_and_fractions_share_a_device(cluster):
    gpu_ids, visible = zray.get(devices.options(num_gpus=2).remote())
    assert sorted(gpu_ids) == [0, 1] and sorted(visible.split(",")) == ["0", "1"]
    barrier = Barrier.remote(2)
    halves = zray.get([devices.options(num_gpus=0.5).remote(barrier) for _ in range(2)], timeout=30)
    assert halves[0][0] == halves[1][0] and len(halves[0][0]) == 1


def test_no_gpu_no_devices(cluster):
    assert zray.get(devices.remote()) == ([], os.environ.get("CUDA_VISIBLE_DEVICES"))
    assert zray.get_gpu_ids() == []


@zray.remote
def worker_pid(barrier=None):
    if barrier is not None:
        zray.get(barrier.arrive.remote())
    return os.getpid()


def test_gpu_and_cpu_tasks_never_share_a_worker_process(cluster):
    """As in Ray: a worker that ran a GPU task serves only GPU tasks, and one
    that ran a CPU task only CPU tasks (device state must not leak)."""
    barrier = Barrier.remote(4)       # every worker the node started runs a CPU task
    cpu_pids = set(zray.get([worker_pid.remote(barrier) for _ in range(4)], timeout=30))
    gpu_pids = {zray.get(worker_pid.options(num_gpus=1).remote(), timeout=30) for _ in range(4)}
    assert cpu_pids and gpu_pids and not cpu_pids & gpu_pids
    again = {zray.get(worker_pid.remote(), timeout=30) for _ in range(4)}
    assert not again & gpu_pids


def test_an_actor_keeps_its_device(cluster):
    actor = GpuActor.remote()
    first = zray.get(actor.devices.remote())
    assert len(first[0]) == 1 and first[1] == str(first[0][0])
    assert zray.get(actor.devices.remote()) == first
    # The other device is still free for a task meanwhile.
    other, _ = zray.get(devices.options(num_gpus=1).remote(), timeout=30)
    assert other != first[0]
    zray.kill(actor)


def test_gpu_instances_assign_and_release():
    gpus = GpuInstances(2)
    whole = gpus.assign(UNIT)
    assert whole == ((0, UNIT),)
    half = gpus.assign(UNIT // 2)
    assert half == ((1, UNIT // 2),)
    assert gpus.assign(UNIT) is None                 # no whole device left
    assert gpus.assign(UNIT // 2) == ((1, UNIT // 2),)   # best fit: the shared one
    gpus.release(whole)
    assert gpus.assign(2 * UNIT) is None             # device 1 is still in use
    assert gpus.assign(UNIT) == ((0, UNIT),)
    assert gpus.assign(0) == ()


@zray.remote(num_gpus=1)
def one_gpu():
    return zray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")


def test_the_nodes_cuda_visible_devices_are_the_gpu_ids_handed_out(no_cluster, monkeypatch):
    """As Ray: a node started with CUDA_VISIBLE_DEVICES set hands out those devices."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6")
    zray.init(num_cpus=3, num_gpus=3)
    results = zray.get([one_gpu.remote() for _ in range(9)], timeout=60)
    assert {ids[0] for ids, _ in results} <= {4, 5, 6}
    assert all(visible == str(ids[0]) for ids, visible in results)
