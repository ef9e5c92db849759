"""zray.util.ActorPool and cancel() of tasks, against a real cluster."""
from __future__ import annotations

import os
import time

import pytest

import zray
from zray import exceptions
from zray.util import ActorPool
from conftest import Signal, pid_running, wait_for

CLUSTER = dict(num_cpus=2, resources={"slot": 1})

pytestmark = pytest.mark.timeout(120)


# --------------------------------------------------------------- ActorPool ---
@zray.remote
class Doubler:
    def double(self, x):
        return 2 * x

    def slow_double(self, x, signal):
        if x == 0:
            zray.get(signal.wait.remote())
        return 2 * x


def test_actor_pool_map_and_map_unordered(cluster):
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    assert list(pool.map(lambda a, v: a.double.remote(v), range(10))) == [2 * i for i in range(10)]
    out = list(pool.map_unordered(lambda a, v: a.double.remote(v), range(10)))
    assert sorted(out) == [2 * i for i in range(10)]


def test_actor_pool_unordered_returns_fast_results_first(cluster):
    signal = Signal.remote()
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    results = pool.map_unordered(lambda a, v: a.slow_double.remote(v, signal), [0, 1, 2, 3])
    first_three = [next(results) for _ in range(3)]
    assert sorted(first_three) == [2, 4, 6]
    zray.get(signal.send.remote())
    assert list(results) == [0]


def test_actor_pool_submit_get_next(cluster):
    pool = ActorPool([Doubler.remote()])
    for v in (1, 2, 3):
        pool.submit(lambda a, v: a.double.remote(v), v)
    assert pool.has_next()
    assert [pool.get_next(), pool.get_next(), pool.get_next()] == [2, 4, 6]
    assert not pool.has_next()
    with pytest.raises(StopIteration):
        pool.get_next()


def test_actor_pool_get_next_timeout(cluster):
    signal = Signal.remote()
    pool = ActorPool([Doubler.remote()])
    pool.submit(lambda a, v: a.slow_double.remote(v, signal), 0)
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.1)
    zray.get(signal.send.remote())
    assert pool.get_next(timeout=30) == 0


def test_actor_pool_map_submits_at_once_and_skips_uncollected_results(cluster):
    signal = Signal.remote()
    pool = ActorPool([Doubler.remote(), Doubler.remote()])
    pool.submit(lambda a, v: a.slow_double.remote(v, signal), 0)   # never collected
    results = pool.map(lambda a, v: a.double.remote(v), [1, 2, 3])
    # Submitted before the first next(), as in Ray: the busy actor's turn comes later.
    assert not pool.has_free()
    zray.get(signal.send.remote())
    assert list(results) == [2, 4, 6]


def test_actor_pool_ignored_timeouts_raise_and_skip_the_task(cluster):
    signal = Signal.remote()
    pool = ActorPool([Doubler.remote()])
    pool.submit(lambda a, v: a.slow_double.remote(v, signal), 0)
    pool.submit(lambda a, v: a.double.remote(v), 5)
    with pytest.raises(TimeoutError, match="has been ignored"):
        pool.get_next_unordered(timeout=0.1, ignore_if_timedout=True)
    zray.get(signal.send.remote())
    assert pool.get_next_unordered(timeout=30) == 10 and not pool.has_next()


@zray.remote
class Mortal:
    def work(self, x):
        if x < 0:
            os._exit(1)
        return x


def test_actor_pool_stops_using_an_actor_that_died(cluster):
    pool = ActorPool([Mortal.remote(), Mortal.remote()])
    pool.submit(lambda a, v: a.work.remote(v), -1)
    with pytest.raises(exceptions.ActorDiedError):
        pool.get_next(timeout=30)
    assert list(pool.map(lambda a, v: a.work.remote(v), [1, 2, 3])) == [1, 2, 3]
    assert len(pool._idle_actors) == 1


# ------------------------------------------------------------------ cancel ---
@zray.remote
def spin(seconds, started=None):
    if started:
        with open(started, "w") as f:
            f.write(str(os.getpid()))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.005)
    return "finished"


@zray.remote
def sleep_in_c(seconds, started):
    open(started, "w").close()
    time.sleep(seconds)
    return "finished"


@zray.remote
def wait_on_child(seconds, started):
    return zray.get(spin.remote(seconds, started))


def test_cancel_queued_task(cluster):
    signal = Signal.remote()

    @zray.remote(resources={"slot": 1})
    def hold(signal):
        zray.get(signal.wait.remote())
        return "held"

    @zray.remote(resources={"slot": 1})
    def queued():
        return "ran"

    holder = hold.remote(signal)
    wait_for(lambda: zray.get(signal.num_waiters.remote()) == 1, 15, "the slot holder to run")
    victim = queued.remote()
    zray.cancel(victim)
    with pytest.raises(exceptions.TaskCancelledError):
        zray.get(victim, timeout=30)
    zray.get(signal.send.remote())
    assert zray.get(holder, timeout=30) == "held"
    assert zray.get(queued.remote(), timeout=30) == "ran"


def test_cancel_running_task(cluster, tmp_path):
    started = str(tmp_path / "started")
    ref = spin.remote(60, started)
    wait_for(lambda: os.path.exists(started), 15, "the task to start")
    zray.cancel(ref)
    with pytest.raises(exceptions.TaskCancelledError) as info:
        zray.get(ref, timeout=30)
    # Cancelled while running: Ray's RayTaskError(TaskCancelledError), carrying where it ran.
    assert isinstance(info.value, exceptions.RayTaskError)
    assert type(info.value).__name__ == "RayTaskError(TaskCancelledError)"
    assert zray.get(spin.remote(0), timeout=30) == "finished"


def test_a_task_cancelled_while_its_arguments_unpickle_never_runs(cluster, tmp_path):
    unpickling, ran = str(tmp_path / "unpickling"), str(tmp_path / "ran")

    class SlowToUnpickle:
        def __reduce__(self):
            def rebuild():
                open(unpickling, "w").close()
                time.sleep(2)
                return SlowToUnpickle()
            return rebuild, ()

    @zray.remote
    def body(argument):
        open(ran, "w").close()

    ref = body.remote(SlowToUnpickle())
    wait_for(lambda: os.path.exists(unpickling), 15, "the argument to be unpickled")
    zray.cancel(ref)
    with pytest.raises(exceptions.TaskCancelledError):
        zray.get(ref, timeout=30)
    assert not os.path.exists(ran)


def test_cancel_task_blocked_in_get_and_its_children(cluster, tmp_path):
    started = str(tmp_path / "child_started")
    ref = wait_on_child.remote(60, started)
    wait_for(lambda: os.path.exists(started), 15, "the child task to start")
    zray.cancel(ref)  # recursive=True by default: the child is cancelled too
    with pytest.raises(exceptions.TaskCancelledError):
        zray.get(ref, timeout=30)
    # Both the parent and the 60 s child gave their CPU back.
    wait_for(lambda: zray.available_resources().get("CPU") == 2, 20, "CPUs to come back")


def test_cancel_force_kills_the_worker(cluster, tmp_path):
    started = str(tmp_path / "started")
    ref = sleep_in_c.remote(120, started)
    wait_for(lambda: os.path.exists(started), 15, "the task to start")
    zray.cancel(ref, force=True)
    with pytest.raises(exceptions.TaskCancelledError):
        zray.get(ref, timeout=30)
    assert zray.get(spin.remote(0), timeout=30) == "finished"
    wait_for(lambda: zray.available_resources().get("CPU") == 2, 20, "CPUs to come back")


def test_force_cancel_ends_the_tasks_children_too(cluster, tmp_path):
    """The parent's worker exits; the workers leased to it (its children's)
    end with it, as in Ray, instead of running on with their CPUs held."""
    started = str(tmp_path / "child_started")
    ref = wait_on_child.remote(60, started)
    wait_for(lambda: os.path.exists(started), 15, "the child task to start")
    child_pid = int(open(started).read())
    zray.cancel(ref, force=True)
    with pytest.raises(exceptions.TaskCancelledError):
        zray.get(ref, timeout=30)
    wait_for(lambda: not pid_running(child_pid), 20, "the child's worker to end")
    wait_for(lambda: zray.available_resources().get("CPU") == 2, 20, "CPUs to come back")


@zray.remote
def catches_the_interrupt(started, block_in_get):
    open(started, "w").close()
    try:
        if block_in_get:
            zray.get(spin.remote(60))
        while True:
            time.sleep(0.01)
    except KeyboardInterrupt:
        return ("interrupted", zray.get_runtime_context().is_canceled())


@pytest.mark.parametrize("block_in_get", [False, True])
def test_a_cancelled_task_sees_keyboard_interrupt_as_in_ray(cluster, tmp_path, block_in_get):
    started = str(tmp_path / "started")
    ref = catches_the_interrupt.remote(started, block_in_get)
    wait_for(lambda: os.path.exists(started), 15, "the task to start")
    time.sleep(0.2)
    zray.cancel(ref)
    assert zray.get(ref, timeout=30) == ("interrupted", True)


def test_cancel_finished_task_is_a_no_op(cluster):
    ref = spin.remote(0)
    assert zray.get(ref) == "finished"
    zray.cancel(ref)
    assert zray.get(ref) == "finished"
