"""zray.util.multiprocessing.Pool: the standard library's Pool API on actors
(Ray's ray.util.multiprocessing), with real worker processes."""
from __future__ import annotations

import os
import threading
import time

import pytest

from zray.util.multiprocessing import Pool, PoolTaskError, TimeoutError

CLUSTER = dict(num_cpus=2)

pytestmark = pytest.mark.timeout(90)


def square(x):
    return x * x


def add(a, b):
    return a + b


def fail_on_three(x):
    if x == 3:
        raise KeyError("three")
    return x


def pid_of(_):
    return os.getpid()


def set_marker(value):
    os.environ["POOL_MARKER"] = value


def marker(_):
    return os.environ.get("POOL_MARKER")


def nap(seconds):
    time.sleep(seconds)
    return seconds


def test_map_starmap_apply_and_imap(cluster):
    with Pool(2) as pool:
        assert pool.map(square, range(10)) == [x * x for x in range(10)]
        assert pool.map(square, range(10), chunksize=3) == [x * x for x in range(10)]
        assert pool.starmap(add, [(1, 2), (3, 4)]) == [3, 7]
        assert pool.apply(add, (5, 6)) == 11
        assert pool.apply(add, (), {"a": 1, "b": 2}) == 3
        assert list(pool.imap(square, range(7), chunksize=2)) == [x * x for x in range(7)]
        assert sorted(pool.imap_unordered(square, range(7))) == [x * x for x in range(7)]
        assert len(set(pool.map(pid_of, range(8), chunksize=1))) == 2   # two processes


def test_errors_come_back_as_the_functions_exception(cluster):
    with Pool(2) as pool:
        result = pool.map_async(fail_on_three, range(5))
        with pytest.raises(KeyError, match="three"):
            result.get(30)
        assert result.ready() and not result.successful()
        with pytest.raises(KeyError):
            pool.apply(fail_on_three, (3,))
        # imap yields a failed call as a PoolTaskError item and goes on (Ray's).
        items = list(pool.imap(fail_on_three, range(5)))
        assert items[:3] == [0, 1, 2] and items[4] == 4
        assert isinstance(items[3], PoolTaskError) and isinstance(items[3].underlying, KeyError)


def _pool_inside_a_task(n):
    with Pool(ray_address="auto") as inner:
        return inner.map(square, range(n))


def test_a_pool_works_inside_a_pool_task(cluster):
    """Pool processes hold no CPU (Ray's), so a pool inside a pool's task
    starts even when the outer pool's tasks use every CPU."""
    with Pool(2) as pool:
        assert pool.map(_pool_inside_a_task, [2, 3], chunksize=1) == [[0, 1], [0, 1, 4]]


def test_async_results_callbacks_and_timeouts(cluster):
    with Pool(2) as pool:
        done = threading.Event()
        got = []
        pool.apply_async(square, (7,), callback=lambda v: (got.append(v), done.set()))
        assert done.wait(30) and got == [49]
        errors = []
        failed = threading.Event()
        pool.apply_async(fail_on_three, (3,),
                         error_callback=lambda e: (errors.append(e), failed.set()))
        assert failed.wait(30) and isinstance(errors[0], KeyError)
        slow = pool.apply_async(nap, (1.5,))
        with pytest.raises(TimeoutError):
            slow.get(0.1)
        assert not slow.ready()
        with pytest.raises(ValueError, match="not ready"):
            slow.successful()
        assert slow.get(30) == 1.5 and slow.successful()
        with pytest.raises(TimeoutError):
            pool.imap(nap, [1.5]).next(timeout=0.1)


def test_initializer_and_maxtasksperchild(cluster):
    with Pool(2, initializer=set_marker, initargs=("ready",)) as pool:
        assert set(pool.map(marker, range(6))) == {"ready"}
    pool = Pool(2, maxtasksperchild=1)
    assert len(set(pool.map(pid_of, range(6), chunksize=1))) == 6   # a fresh process each
    pool.close()
    pool.join()


def test_a_closed_pool_refuses_work_and_bad_sizes_are_named(cluster):
    pool = Pool(1)
    with pytest.raises(ValueError, match="still running"):
        pool.join()
    pool.close()
    with pytest.raises(ValueError, match="Pool not running"):
        pool.map(square, [1])
    pool.join()
    with pytest.raises(ValueError, match="only 2 CPUs"):
        Pool(3)
    with pytest.raises(ValueError, match=">0"):
        Pool(0)
