"""The raylet ends extra idle workers, but a worker that owns objects waits
until it owns none (as Ray's does), so refs it handed out keep working."""
from __future__ import annotations

import os
import time

import pytest

import zray
from conftest import pid_running, wait_for

CLUSTER = dict(num_cpus=1)      # the child below runs on an extra worker

pytestmark = pytest.mark.timeout(60)


@zray.remote
def child():
    return os.getpid(), [zray.put("from the child's worker")]


@zray.remote
def parent():
    # Blocked in get, this worker gives its CPU back and the raylet starts a
    # second one for the child: afterwards one of the two is an extra idle one.
    child_pid, child_refs = zray.get(child.remote())
    return (os.getpid(), child_pid), [zray.put("from the parent's worker")] + child_refs


def test_an_idle_worker_that_owns_objects_outlives_the_reaper(cluster):
    pids, refs = zray.get(parent.remote(), timeout=30)
    assert pids[0] != pids[1]
    time.sleep(2.5)                       # extra idle workers are asked to end after 1 s
    assert zray.get(refs, timeout=10) == ["from the parent's worker", "from the child's worker"]
    assert all(pid_running(pid) for pid in pids)
    del refs
    # Owning nothing now, the worker that was asked to leave does.
    wait_for(lambda: any(not pid_running(pid) for pid in pids), 10, "the extra worker to exit")
