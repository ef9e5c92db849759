"""Remote functions against a real cluster: arguments, returns, options,
nested tasks, resources, retries."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

import zray
from zray import exceptions
from conftest import Barrier, Signal, pid_running, wait_for

CLUSTER = dict(num_cpus=2, num_gpus=1, resources={"custom": 1})

pytestmark = pytest.mark.timeout(60)


@zray.remote
def add(x, y=10, *, z=100):
    return x + y + z


@zray.remote
def echo(x):
    return x


@zray.remote
def ident_pid(x):
    return x, os.getpid()


def _append(path, text):
    with open(path, "a") as f:
        f.write(text + "\n")


def _lines(path):
    try:
        with open(path) as f:
            return f.read().split()
    except FileNotFoundError:
        return []


class Tattle:
    """Records in a file the pid of every process that unpickles it."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return _rebuild_tattle, (self.path,)


def _rebuild_tattle(path):
    _append(path, str(os.getpid()))
    return Tattle(path)


# ----------------------------------------------------------------- arguments ---
def test_args_kwargs_and_defaults(cluster):
    assert zray.get(add.remote(1)) == 111
    assert zray.get(add.remote(1, 2)) == 103
    assert zray.get(add.remote(1, y=2, z=3)) == 6
    assert zray.get(add.remote(x=5, z=0)) == 15


def test_many_tasks_results_in_order(cluster):
    refs = [echo.remote(i) for i in range(200)]
    assert zray.get(refs) == list(range(200))


def test_ref_argument_is_resolved_without_driver_fetch(cluster, tmp_path):
    path = str(tmp_path / "unpickled_by")

    @zray.remote
    def make(path):
        return Tattle(path)

    @zray.remote
    def consume(value):
        return type(value).__name__, os.getpid()

    name, consumer_pid = zray.get(consume.remote(make.remote(path)))
    assert name == "Tattle"
    pids = [int(p) for p in _lines(path)]
    assert consumer_pid in pids
    assert os.getpid() not in pids, "the driver deserialized a value it only passed along"


def test_ref_kwarg_and_mixed_args(cluster):
    a, b = echo.remote(1), zray.put(2)
    assert zray.get(add.remote(a, y=b, z=echo.remote(3))) == 6


def test_refs_nested_in_list_arrive_as_refs(cluster):
    @zray.remote
    def inspect_refs(items):
        kinds = [type(x).__name__ for x in items]
        return kinds, zray.get(items)

    refs = [echo.remote(i) for i in range(3)] + [zray.put("p")]
    kinds, values = zray.get(inspect_refs.remote(refs))
    assert kinds == ["ObjectRef"] * 4
    assert values == [0, 1, 2, "p"]


def test_chain_of_dependent_tasks(cluster):
    ref = echo.remote(0)
    for _ in range(20):
        ref = add.remote(ref, 1, z=0)
    assert zray.get(ref) == 20


def test_failed_dependency_propagates(cluster):
    @zray.remote
    def fail():
        raise ValueError("upstream broke")

    with pytest.raises(ValueError, match="upstream broke"):
        zray.get(add.remote(fail.remote()))


# ------------------------------------------------------------------- returns ---
def test_num_returns(cluster):
    @zray.remote(num_returns=3)
    def three():
        return 1, "two", [3]

    refs = three.remote()
    assert isinstance(refs, list) and len(refs) == 3
    assert zray.get(refs) == [1, "two", [3]]
    assert zray.get(refs[1]) == "two"
    single = echo.options(num_returns=1).remote(5)
    assert isinstance(single, zray.ObjectRef)
    assert zray.get(single) == 5


def test_num_returns_zero_runs_the_task(cluster, tmp_path):
    path = str(tmp_path / "ran")

    @zray.remote(num_returns=0)
    def side_effect(path):
        _append(path, "ran")

    assert side_effect.remote(path) is None
    wait_for(lambda: _lines(path) == ["ran"], what="a num_returns=0 task to run")


def test_num_returns_via_options(cluster):
    @zray.remote
    def pair():
        return "a", "b"

    a, b = pair.options(num_returns=2).remote()
    assert zray.get([a, b]) == ["a", "b"]
    assert zray.get(pair.remote()) == ("a", "b")


def test_wrong_number_of_returns_is_an_error(cluster):
    @zray.remote(num_returns=2)
    def one():
        return 1, 2, 3

    a, b = one.remote()
    with pytest.raises(exceptions.RayTaskError, match="num_returns"):
        zray.get(a)


# ------------------------------------------------------------------- options ---
def test_options_resources(cluster):
    @zray.remote
    def where():
        return os.getpid()

    assert zray.get(where.options(num_cpus=0).remote()) > 0
    assert zray.get(where.options(num_cpus=0.5).remote()) > 0
    assert zray.get(where.options(num_gpus=1).remote()) > 0
    assert zray.get(where.options(resources={"custom": 1}).remote()) > 0
    assert zray.get(where.options(name="renamed", max_retries=0,
                                  retry_exceptions=False).remote()) > 0


def test_options_do_not_change_the_function(cluster):
    @zray.remote(num_returns=2)
    def two():
        return 1, 2

    assert zray.get(two.options(num_returns=1).remote()) == (1, 2)
    assert zray.get(two.remote()) == [1, 2]


# ------------------------------------------------------------ nested tasks ---
@zray.remote
def factorial(n):
    if n <= 1:
        return 1
    return n * zray.get(factorial.remote(n - 1))


@pytest.mark.cluster(num_cpus=1)
def test_nested_get_on_one_cpu_does_not_deadlock(cluster):
    assert zray.get(factorial.remote(6), timeout=30) == 720


@zray.remote
def fib(n):
    if n < 2:
        return n
    return sum(zray.get([fib.remote(n - 1), fib.remote(n - 2)]))


def test_recursive_fan_out_with_nested_gets(cluster):
    # 67 tasks, up to 8 levels of blocked parents on a 2-CPU node.
    assert zray.get(fib.remote(8), timeout=60) == 21


@pytest.mark.cluster(num_cpus=1)
def test_nested_wait_and_fan_out_on_one_cpu(cluster):
    @zray.remote
    def fan_out(n):
        refs = [echo.remote(i) for i in range(n)]
        ready, _ = zray.wait(refs, num_returns=n, timeout=30)
        return sum(zray.get(ready))

    assert zray.get([fan_out.remote(5) for _ in range(3)], timeout=30) == [10, 10, 10]


# -------------------------------------------------------------- resources ---
@zray.remote
def hold_at_barrier(barrier, release):
    """Arrive at the barrier and wait for ``release`` WITHOUT blocking in get
    (which would give the CPU back): the task keeps its resources meanwhile."""
    arrived = barrier.arrive.remote()
    released = release.wait.remote()
    deadline = time.monotonic() + 30
    while not zray.wait([released], timeout=0)[0]:
        if time.monotonic() > deadline:
            raise TimeoutError("never released")
        time.sleep(0.01)
    return zray.get(arrived)


@pytest.mark.cluster(num_cpus=1)
def test_fractional_cpus_run_two_tasks_at_once(cluster):
    barrier = Barrier.remote(2)
    release = Signal.remote()
    refs = [hold_at_barrier.options(num_cpus=0.5).remote(barrier, release) for _ in range(2)]
    wait_for(lambda: zray.get(barrier.arrived.remote()) == 2, 30, "both 0.5-CPU tasks to run")
    # Both hold their half CPU: the cluster's CPU is all in use.
    wait_for(lambda: zray.available_resources().get("CPU", 0) == 0, 10, "CPU fully used")
    zray.get(release.send.remote())
    assert zray.get(refs, timeout=30) == [2, 2]
    wait_for(lambda: zray.available_resources().get("CPU") == 1, 10, "CPU given back")


@pytest.mark.cluster(num_cpus=1)
def test_whole_cpu_tasks_do_not_share_one_cpu(cluster):
    barrier = Barrier.remote(2)
    release = Signal.remote()
    first = hold_at_barrier.remote(barrier, release)
    wait_for(lambda: zray.get(barrier.arrived.remote()) == 1, 30, "the first task to run")
    second = hold_at_barrier.remote(barrier, release)
    ready, _ = zray.wait([second], timeout=0.5)
    assert not ready
    assert zray.get(barrier.arrived.remote()) == 1, "second 1-CPU task ran on a busy 1-CPU node"
    zray.get(release.send.remote())
    assert zray.get([first, second], timeout=30) == [2, 2]


def test_custom_resource_is_held_exclusively(cluster):
    release = Signal.remote()

    @zray.remote(resources={"custom": 1})
    def use_custom(release):
        released = release.wait.remote()
        while not zray.wait([released], timeout=0)[0]:
            time.sleep(0.01)
        return "done"

    first = use_custom.remote(release)
    wait_for(lambda: "custom" not in zray.available_resources(), 10, "custom to be in use")
    second = use_custom.remote(release)
    with pytest.raises(exceptions.GetTimeoutError):
        zray.get(second, timeout=0.3)
    zray.get(release.send.remote())
    assert zray.get([first, second], timeout=30) == ["done", "done"]


def test_missing_resource_stays_pending_and_warns(cluster, capfd):
    ref = echo.options(resources={"no_such_thing": 1}).remote(1)
    with pytest.raises(exceptions.GetTimeoutError):
        zray.get(ref, timeout=0.5)
    ready, not_ready = zray.wait([ref], timeout=0.1)
    assert ready == [] and not_ready == [ref]
    err = wait_for(lambda: "no_such_thing" in capfd.readouterr().err, 10,
                   "an infeasible-task warning on stderr")
    assert err
    zray.cancel(ref)
    with pytest.raises(exceptions.TaskCancelledError):
        zray.get(ref, timeout=10)
    # The cluster still runs feasible work.
    assert zray.get(echo.remote(2), timeout=10) == 2


def test_an_infeasible_shape_warns_exactly_once_in_a_plain_script(no_cluster):
    # A script without logging set up (pytest's own handlers would hide a second
    # copy printed through logging's last-resort handler).
    script = (
        "import time, zray\n"
        "zray.init(num_cpus=1)\n"
        "f = zray.remote(lambda x: x).options(resources={'no_such_thing': 1})\n"
        "refs = [f.remote(1), f.remote(2)]\n"
        "time.sleep(1.5)\n"
        "zray.shutdown()\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "no_such_thing" in line]
    assert len(warnings) == 1, done.stderr


def test_too_many_gpus_warns_instead_of_erroring(cluster, capfd):
    ref = echo.options(num_gpus=4).remote(1)
    with pytest.raises(exceptions.GetTimeoutError):
        zray.get(ref, timeout=0.3)
    wait_for(lambda: "GPU" in capfd.readouterr().err, 10, "an infeasible-task warning")
    zray.cancel(ref)


# ----------------------------------------------------------------- retries ---
@zray.remote
def die_until(path, survive_after):
    _append(path, str(os.getpid()))
    if len(_lines(path)) <= survive_after:
        os._exit(1)
    return len(_lines(path))


def test_worker_death_is_retried(cluster, tmp_path):
    path = str(tmp_path / "attempts")
    assert zray.get(die_until.options(max_retries=2).remote(path, 2), timeout=30) == 3
    assert len(set(_lines(path))) == 3, "each attempt ran in a new worker process"


def test_worker_death_without_retries_left_raises(cluster, tmp_path):
    path = str(tmp_path / "attempts")
    with pytest.raises(exceptions.WorkerCrashedError):
        zray.get(die_until.options(max_retries=1).remote(path, 100), timeout=30)
    assert len(_lines(path)) == 2


def test_worker_death_max_retries_zero(cluster, tmp_path):
    path = str(tmp_path / "attempts")
    with pytest.raises(exceptions.WorkerCrashedError):
        zray.get(die_until.options(max_retries=0).remote(path, 100), timeout=30)
    assert len(_lines(path)) == 1
    # The cluster replaced the worker and still runs tasks.
    assert zray.get(echo.remote("alive"), timeout=10) == "alive"


@zray.remote
def quick_or_die(i, path=None):
    if path is not None:
        _append(path, str(os.getpid()))
        os._exit(1)
    return i


@pytest.mark.parametrize("max_retries", [0, 1])
def test_crash_does_not_fail_tasks_queued_behind_it(cluster, tmp_path, max_retries):
    """Short tasks are pipelined to leased workers; when one kills its worker,
    only it is charged: the others were queued behind it and never ran."""
    fn = quick_or_die.options(max_retries=max_retries)
    for _ in range(3):  # short tasks: the owner starts pipelining them
        assert zray.get([fn.remote(i) for i in range(200)], timeout=30) == list(range(200))
    path = str(tmp_path / "crashes")
    refs = [fn.remote(i) for i in range(150)]
    poison = fn.remote(-1, path)
    refs += [fn.remote(i) for i in range(150, 300)]
    assert zray.get(refs, timeout=60) == list(range(300))
    with pytest.raises(exceptions.WorkerCrashedError):
        zray.get(poison, timeout=30)
    assert len(_lines(path)) == max_retries + 1


@zray.remote
def raise_until(path, succeed_at, exc_type):
    _append(path, "try")
    attempt = len(_lines(path))
    if attempt < succeed_at:
        raise exc_type(f"attempt {attempt}")
    return attempt


def test_exceptions_are_not_retried_by_default(cluster, tmp_path):
    path = str(tmp_path / "attempts")
    with pytest.raises(ValueError, match="attempt 1"):
        zray.get(raise_until.options(max_retries=3).remote(path, 3, ValueError))
    assert len(_lines(path)) == 1


def test_retry_exceptions_true(cluster, tmp_path):
    path = str(tmp_path / "attempts")
    ref = raise_until.options(max_retries=3, retry_exceptions=True).remote(path, 3, ValueError)
    assert zray.get(ref, timeout=30) == 3


def test_retry_exceptions_runs_out(cluster, tmp_path):
    path = str(tmp_path / "attempts")
    ref = raise_until.options(max_retries=1, retry_exceptions=True).remote(path, 10, KeyError)
    with pytest.raises(KeyError, match="attempt 2"):
        zray.get(ref, timeout=30)
    assert len(_lines(path)) == 2


def test_retry_exceptions_list(cluster, tmp_path):
    listed = str(tmp_path / "listed")
    ref = raise_until.options(max_retries=3, retry_exceptions=[ValueError]).remote(
        listed, 2, ValueError)
    assert zray.get(ref, timeout=30) == 2
    unlisted = str(tmp_path / "unlisted")
    ref = raise_until.options(max_retries=3, retry_exceptions=[ValueError]).remote(
        unlisted, 2, TypeError)
    with pytest.raises(TypeError):
        zray.get(ref, timeout=30)
    assert len(_lines(unlisted)) == 1


@zray.remote
def fails_twice_noting_times(path):
    with open(path, "a") as f:
        f.write(f"{time.time()}\n")
    if len(_lines(path)) < 3:
        raise ValueError("not yet")
    return "passed"


def test_an_exception_is_retried_after_a_pause_as_in_ray(cluster, tmp_path):
    """Ray waits task_retry_delay_ms (1 s) before running a task whose
    exception it retries: state that changes a moment later can let it pass."""
    path = str(tmp_path / "attempts")
    ref = fails_twice_noting_times.options(max_retries=2, retry_exceptions=True).remote(path)
    assert zray.get(ref, timeout=30) == "passed"
    times = [float(word) for word in _lines(path)]
    assert len(times) == 3 and all(b - a >= 0.9 for a, b in zip(times, times[1:]))


@zray.remote(max_retries=3, retry_exceptions=[ValueError])
def yields_then_fails_once(path):
    with open(path, "a") as f:
        f.write(f"{time.time()}\n")
    first_attempt = len(_lines(path)) == 1
    for i in range(5):
        if i == 3 and first_attempt:
            raise ValueError("the first attempt fails at item 3")
        yield i


def test_a_streaming_generator_is_retried_without_repeating_items(cluster, tmp_path):
    path = str(tmp_path / "attempts")
    gen = yields_then_fails_once.remote(path)
    assert [zray.get(ref, timeout=30) for ref in gen] == [0, 1, 2, 3, 4]
    assert len(_lines(path)) == 2


def test_retry_exceptions_in_decorator(cluster, tmp_path):
    @zray.remote(max_retries=2, retry_exceptions=[ZeroDivisionError])
    def flaky(path):
        _append(path, "try")
        if len(_lines(path)) < 3:
            return 1 / 0
        return "ok"

    assert zray.get(flaky.remote(str(tmp_path / "a")), timeout=30) == "ok"


# ------------------------------------------------------ driver code paths ---
@pytest.mark.timeout(60)
def test_script_directory_modules_are_importable_by_workers(tmp_path, no_cluster):
    """A driver script importing a module that sits next to it works when run
    from another directory (Ray puts the script directory on workers' path)."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "helper_mod.py").write_text(textwrap.dedent("""
        import zray

        class Box:
            def __init__(self, v):
                self.v = v

        @zray.remote
        def boxed(v):
            return Box(v)
    """))
    (app / "main.py").write_text(textwrap.dedent("""
        import zray
        import helper_mod
        zray.init(num_cpus=1)
        print("RESULT", zray.get(helper_mod.boxed.remote(41), timeout=30).v + 1)
        zray.shutdown()
    """))
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, str(app / "main.py")], cwd=str(tmp_path),
                          env=env, capture_output=True, text=True, timeout=50)
    assert "RESULT 42" in proc.stdout, proc.stdout + proc.stderr


def test_max_calls_retires_the_worker(cluster):
    @zray.remote(max_calls=2)
    def pid():
        return os.getpid()

    pids = [zray.get(pid.remote(), timeout=30) for _ in range(6)]
    # Each worker runs at most two calls of this function, then exits.
    assert max(pids.count(p) for p in set(pids)) <= 2
    assert len(set(pids)) >= 3


@zray.remote
def slow_zero():
    time.sleep(0.1)
    return 0


@zray.remote(max_calls=1, max_retries=0)
def submits_and_returns_the_ref():
    return [slow_zero.remote(), os.getpid()]


def test_a_max_calls_worker_that_owns_objects_in_use_waits_for_their_release(cluster):
    """As Ray's test_background_tasks_with_max_calls: the worker retires (no
    more tasks) but lives on as the owner of what it returned, then leaves."""
    nested = zray.get([submits_and_returns_the_ref.remote() for _ in range(6)], timeout=60)
    assert zray.get([ref for ref, _ in nested], timeout=60) == [0] * 6
    owners = {pid for _, pid in nested}
    assert len(owners) == 6          # max_calls=1: a worker each
    del nested
    wait_for(lambda: not any(pid_running(pid) for pid in owners), 30, "the retired owners to exit")
