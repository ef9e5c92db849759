"""zray.util.joblib: joblib's Parallel on zray's Pool (Ray's ray.util.joblib)."""
import os
import time

import pytest

import zray

joblib = pytest.importorskip("joblib", reason="joblib is the optional dependency this backend plugs into")
from joblib import Parallel, delayed, parallel_backend  # noqa: E402

from zray.util.joblib import register_ray  # noqa: E402

CLUSTER = dict(num_cpus=2)
pytestmark = pytest.mark.timeout(120)


def _square_where(i):
    return i * i, os.getpid()


def _fail_on_three(i):
    if i == 3:
        raise ValueError(f"item {i} is bad")
    return i


def _started_at(_):
    started = time.time()
    time.sleep(1.0)
    return os.getpid(), started


def test_parallel_runs_in_the_pools_actors(cluster):
    register_ray()
    with parallel_backend("ray"):
        results = Parallel(n_jobs=2)(delayed(_square_where)(i) for i in range(50))
    assert [value for value, _ in results] == [i * i for i in range(50)]
    pids = {pid for _, pid in results}
    assert os.getpid() not in pids and len(pids) == 2


def test_all_cpus_run_at_once_with_n_jobs_minus_one(cluster):
    register_ray()
    with parallel_backend("ray", n_jobs=-1):
        results = Parallel()(delayed(_started_at)(i) for i in range(2))
    pids = {pid for pid, _ in results}
    starts = [started for _, started in results]
    assert len(pids) == 2 and max(starts) - min(starts) < 0.9   # side by side, not one after another


def test_an_error_in_a_job_is_raised_with_its_own_type(cluster):
    register_ray()
    with parallel_backend("ray"):
        with pytest.raises(ValueError, match="item 3 is bad"):
            Parallel(n_jobs=2)(delayed(_fail_on_three)(i) for i in range(6))


def _assigned_cpus(_):
    return zray.get_runtime_context().get_assigned_resources().get("CPU")


def test_ray_remote_args_configure_the_pools_actors(cluster):
    register_ray()
    with parallel_backend("ray", ray_remote_args={"num_cpus": 0.5}):
        assert Parallel(n_jobs=2)(delayed(_assigned_cpus)(i) for i in range(4)) == [0.5] * 4
