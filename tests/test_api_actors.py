"""Actors against a real cluster: state and ordering, handles passed around,
async and threaded actors, names and lifetimes, death, ActorPool, cancel."""
from __future__ import annotations

import asyncio
import gc
import os
import threading

import pytest

import zray
from zray import exceptions
from conftest import Signal, wait_for

CLUSTER = dict(num_cpus=2, resources={"slot": 1})

pytestmark = pytest.mark.timeout(60)


@zray.remote
class Counter:
    def __init__(self, start=0):
        self.n = start
        self.log = []

    def incr(self, by=1):
        self.n += by
        return self.n

    def append(self, x):
        self.log.append(x)
        return len(self.log)

    def get_log(self):
        return self.log

    def value(self):
        return self.n

    def pid(self):
        return os.getpid()

    def die(self):
        os._exit(1)

    def block(self, signal):
        zray.get(signal.wait.remote())
        return "unblocked"

    @zray.method(num_returns=2)
    def two(self):
        return self.n, "second"

    def leave(self):
        zray.actor.exit_actor()


# ------------------------------------------------------------ state, order ---
def test_actor_state(cluster):
    c = Counter.remote(10)
    assert zray.get(c.incr.remote()) == 11
    assert zray.get(c.incr.remote(by=5)) == 16
    assert zray.get(c.value.remote()) == 16
    other = Counter.remote()
    assert zray.get(other.value.remote()) == 0


def test_calls_run_in_submission_order(cluster):
    c = Counter.remote()
    refs = [c.append.remote(i) for i in range(300)]
    assert zray.get(refs) == list(range(1, 301))
    assert zray.get(c.get_log.remote()) == list(range(300))


def test_actor_runs_in_its_own_process(cluster):
    a, b = Counter.remote(), Counter.remote()
    pa, pb = zray.get([a.pid.remote(), b.pid.remote()])
    assert pa != pb and os.getpid() not in (pa, pb)


def test_ref_arguments_keep_order(cluster):
    signal = Signal.remote()

    @zray.remote
    def later(signal, x):
        zray.get(signal.wait.remote())
        return x

    c = Counter.remote()
    first = c.append.remote(later.remote(signal, "first"))
    second = c.append.remote("second")
    zray.get(signal.send.remote())
    assert zray.get([first, second], timeout=30) == [1, 2]
    assert zray.get(c.get_log.remote()) == ["first", "second"]


def test_method_num_returns(cluster):
    c = Counter.remote(3)
    a, b = c.two.remote()
    assert zray.get([a, b]) == [3, "second"]
    x, y, z = c.incr.options(num_returns=1).remote(), *c.two.remote()
    assert zray.get(x) == 4 and zray.get([y, z]) == [4, "second"]


# -------------------------------------------------------- handles passed on ---
def test_handle_passed_to_task(cluster):
    @zray.remote
    def bump(counter, times):
        return zray.get([counter.incr.remote() for _ in range(times)])[-1]

    c = Counter.remote()
    assert sorted(zray.get([bump.remote(c, 5) for _ in range(3)], timeout=30))[-1] == 15
    assert zray.get(c.value.remote()) == 15


def test_handle_passed_to_actor(cluster):
    @zray.remote
    class Forwarder:
        def __init__(self, target):
            self.target = target

        def forward(self, by):
            return zray.get(self.target.incr.remote(by))

        def set_target(self, target):
            self.target = target
            return True

    c = Counter.remote()
    f = Forwarder.remote(c)
    assert zray.get(f.forward.remote(2)) == 2
    other = Counter.remote(100)
    assert zray.get(f.set_target.remote(other))
    assert zray.get(f.forward.remote(1)) == 101
    assert zray.get(c.value.remote()) == 2


def test_actor_creates_actor(cluster):
    @zray.remote
    class Parent:
        def __init__(self):
            self.child = Counter.remote(7)

        def child_value(self):
            return zray.get(self.child.incr.remote())

    p = Parent.remote()
    assert zray.get(p.child_value.remote(), timeout=30) == 8


def test_current_actor_handle(cluster):
    @zray.remote
    class Me:
        def me(self):
            return zray.get_runtime_context().current_actor

        def hello(self):
            return "hi"

    m = Me.remote()
    handle = zray.get(m.me.remote())
    assert zray.get(handle.hello.remote()) == "hi"


# ------------------------------------------------------- async / threaded ---
@zray.remote
class AsyncPair:
    def __init__(self):
        self.a = asyncio.Event()
        self.b = asyncio.Event()

    async def ping(self):
        self.a.set()
        await asyncio.wait_for(self.b.wait(), 20)
        return "ping"

    async def pong(self):
        self.b.set()
        await asyncio.wait_for(self.a.wait(), 20)
        return "pong"

    def sync_method(self):
        return "sync"


def test_async_actor_runs_calls_concurrently(cluster):
    actor = AsyncPair.remote()
    ping = actor.ping.remote()
    pong = actor.pong.remote()
    assert zray.get([ping, pong], timeout=30) == ["ping", "pong"]
    assert zray.get(actor.sync_method.remote()) == "sync"


def test_async_actor_max_concurrency_one_serializes(cluster):
    @zray.remote(max_concurrency=1)
    class Serial:
        def __init__(self):
            self.running = 0
            self.peak = 0

        async def work(self):
            self.running += 1
            self.peak = max(self.peak, self.running)
            await asyncio.sleep(0.01)
            self.running -= 1

        async def peak_seen(self):
            return self.peak

    s = Serial.remote()
    zray.get([s.work.remote() for _ in range(5)], timeout=30)
    assert zray.get(s.peak_seen.remote()) == 1


def test_threaded_actor_max_concurrency(cluster):
    @zray.remote(max_concurrency=3)
    class Threaded:
        def __init__(self):
            self.barrier = threading.Barrier(3, timeout=20)

        def meet(self):
            self.barrier.wait()
            return threading.get_ident()

    t = Threaded.remote()
    idents = zray.get([t.meet.remote() for _ in range(3)], timeout=30)
    assert len(set(idents)) == 3


def test_threaded_actor_via_options(cluster):
    @zray.remote
    class Threaded:
        def __init__(self):
            self.barrier = threading.Barrier(2, timeout=20)

        def meet(self):
            return self.barrier.wait() in (0, 1)

    t = Threaded.options(max_concurrency=2).remote()
    assert zray.get([t.meet.remote(), t.meet.remote()], timeout=30) == [True, True]


# ------------------------------------------------------- names, lifetimes ---
def test_named_actor_and_namespaces(cluster):
    a = Counter.options(name="named-counter").remote(1)
    assert zray.get(zray.get_actor("named-counter").incr.remote()) == 2
    b = Counter.options(name="named-counter", namespace="other-ns").remote(50)
    assert zray.get(zray.get_actor("named-counter", namespace="other-ns").value.remote()) == 50
    assert zray.get(zray.get_actor("named-counter").value.remote()) == 2
    with pytest.raises(ValueError):
        zray.get_actor("named-counter", namespace="no-such-ns")
    with pytest.raises(ValueError):
        zray.get_actor("no-such-actor")
    with pytest.raises(zray.exceptions.ActorAlreadyExistsError, match="already taken"):
        Counter.options(name="named-counter").remote()
    zray.kill(a)
    zray.kill(b)


def test_get_if_exists(cluster):
    a = Counter.options(name="gie", get_if_exists=True).remote(5)
    b = Counter.options(name="gie", get_if_exists=True).remote(1000)
    assert zray.get(a.incr.remote()) == 6
    assert zray.get(b.incr.remote()) == 7
    assert zray.get(a.pid.remote()) == zray.get(b.pid.remote())
    zray.kill(a)
    with pytest.raises(ValueError, match="name must be specified to use `get_if_exists`"):
        Counter.options(get_if_exists=True).remote(1)


def test_named_actor_visible_to_tasks(cluster):
    keep = Counter.options(name="shared-by-name", namespace="tasks-ns").remote(0)

    @zray.remote
    def bump():
        return zray.get(zray.get_actor("shared-by-name", namespace="tasks-ns").incr.remote())

    assert sorted(zray.get([bump.remote() for _ in range(3)], timeout=30)) == [1, 2, 3]
    zray.kill(keep)


def test_tasks_and_actors_inherit_the_job_namespace(cluster):
    """Without an explicit namespace, names resolve in the driver's namespace
    from tasks and actors too (they run in the job's namespace)."""
    keep = Counter.options(name="in-job-ns").remote(40)
    driver_ns = zray.get_runtime_context().namespace

    @zray.remote
    def from_task():
        handle = zray.get_actor("in-job-ns")
        return zray.get(handle.incr.remote()), zray.get_runtime_context().namespace

    @zray.remote
    class Creator:
        def create_and_find(self):
            self.child = Counter.options(name="made-by-actor").remote(7)
            return zray.get(zray.get_actor("made-by-actor").value.remote())

        def namespace(self):
            return zray.get_runtime_context().namespace

    assert zray.get(from_task.remote(), timeout=30) == (41, driver_ns)
    creator = Creator.remote()
    assert zray.get(creator.namespace.remote()) == driver_ns
    assert zray.get(creator.create_and_find.remote(), timeout=30) == 7
    assert zray.get(zray.get_actor("made-by-actor").value.remote()) == 7
    zray.kill(keep)


def test_detached_actor_survives_its_handle(cluster):
    d = Counter.options(name="detached-one", lifetime="detached").remote(1)
    pid = zray.get(d.pid.remote())
    del d
    gc.collect()
    # A non-detached named actor whose handles are all gone is destroyed ...
    n = Counter.options(name="scoped-one").remote(1)
    zray.get(n.pid.remote())
    del n
    gc.collect()
    wait_for(lambda: _lookup_fails("scoped-one"), 15, "the out-of-scope actor to be destroyed")
    # ... while the detached one is still there, same process, same state.
    again = zray.get_actor("detached-one")
    assert zray.get(again.pid.remote()) == pid
    assert zray.get(again.incr.remote()) == 2
    zray.kill(again)
    wait_for(lambda: _lookup_fails("detached-one"), 15, "the killed actor's name to be released")


def _lookup_fails(name):
    try:
        zray.get_actor(name)
    except ValueError:
        return True
    return False


def test_unnamed_actor_out_of_scope_is_destroyed(cluster):
    c = Counter.remote()
    pid = zray.get(c.pid.remote())
    del c
    gc.collect()
    wait_for(lambda: not _pid_exists(pid), 15, "the actor process to exit")


def _pid_exists(pid):
    import psutil
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# ------------------------------------------------------------------- death ---
def test_kill_then_calls_raise(cluster):
    c = Counter.remote()
    pid = zray.get(c.pid.remote())
    zray.kill(c)
    with pytest.raises(exceptions.RayActorError):
        zray.get(c.incr.remote(), timeout=30)
    with pytest.raises(exceptions.RayActorError):
        zray.get(c.value.remote(), timeout=30)
    wait_for(lambda: not _pid_exists(pid), 15, "the killed actor's process to exit")


def test_kill_fails_pending_calls(cluster):
    signal = Signal.remote()
    c = Counter.remote()
    zray.get(c.value.remote())
    blocked = c.block.remote(signal)
    queued = [c.incr.remote() for _ in range(3)]
    wait_for(lambda: zray.get(signal.num_waiters.remote()) == 1, 15, "the call to block")
    zray.kill(c)
    for ref in [blocked] + queued:
        with pytest.raises(exceptions.RayActorError):
            zray.get(ref, timeout=30)


def test_actor_process_dies(cluster):
    signal = Signal.remote()
    c = Counter.remote()
    zray.get(c.incr.remote())
    died = c.die.remote()
    pending = [c.incr.remote() for _ in range(3)]
    with pytest.raises(exceptions.RayActorError):
        zray.get(died, timeout=30)
    for ref in pending:
        with pytest.raises(exceptions.RayActorError):
            zray.get(ref, timeout=30)
    with pytest.raises(exceptions.RayActorError):
        zray.get(c.incr.remote(), timeout=30)
    del signal


def test_constructor_error(cluster):
    @zray.remote
    class Broken:
        def __init__(self):
            raise ZeroDivisionError("bad constructor 42")

        def method(self):
            return 1

    b = Broken.remote()
    with pytest.raises(exceptions.RayActorError, match="bad constructor 42"):
        zray.get(b.method.remote(), timeout=30)
    with pytest.raises(exceptions.RayActorError, match="ZeroDivisionError"):
        zray.get(b.method.remote(), timeout=30)


def test_method_error_keeps_actor_alive(cluster):
    @zray.remote
    class Fragile:
        def __init__(self):
            self.n = 0

        def fail(self):
            self.n += 1
            raise KeyError("method failed")

        def count(self):
            return self.n

    f = Fragile.remote()
    with pytest.raises(KeyError):
        zray.get(f.fail.remote())
    with pytest.raises(exceptions.RayTaskError):
        zray.get(f.fail.remote())
    assert zray.get(f.count.remote()) == 2


def test_exit_actor(cluster):
    c = Counter.remote()
    pid = zray.get(c.pid.remote())
    with pytest.raises(exceptions.RayActorError):
        zray.get(c.leave.remote(), timeout=30)
    with pytest.raises(exceptions.RayActorError):
        zray.get(c.incr.remote(), timeout=30)
    wait_for(lambda: not _pid_exists(pid), 15, "the exited actor's process to be gone")


def test_exit_actor_outside_actor(cluster):
    with pytest.raises(TypeError):
        zray.actor.exit_actor()


def test_exit_actor_in_async_actor(cluster):
    @zray.remote
    class AsyncLeaver:
        async def leave(self):
            zray.actor.exit_actor()

        async def hello(self):
            return "hello"

    a = AsyncLeaver.remote()
    assert zray.get(a.hello.remote()) == "hello"
    with pytest.raises(exceptions.RayActorError):
        zray.get(a.leave.remote(), timeout=30)
    with pytest.raises(exceptions.RayActorError):
        zray.get(a.hello.remote(), timeout=30)


# ------------------------------------------------------- cancel (actors) ---
def test_cancel_queued_actor_task(cluster):
    signal = Signal.remote()
    c = Counter.remote()
    blocked = c.block.remote(signal)
    victim = c.incr.remote()
    wait_for(lambda: zray.get(signal.num_waiters.remote()) == 1, 15, "the call to block")
    zray.cancel(victim)
    zray.get(signal.send.remote())
    assert zray.get(blocked, timeout=30) == "unblocked"
    with pytest.raises(exceptions.TaskCancelledError):
        zray.get(victim, timeout=30)
    assert zray.get(c.value.remote()) == 0


def test_cancel_force_on_actor_task_is_refused(cluster):
    signal = Signal.remote()
    c = Counter.remote()
    ref = c.block.remote(signal)
    wait_for(lambda: zray.get(signal.num_waiters.remote()) == 1, 15, "the call to block")
    with pytest.raises(ValueError):
        zray.cancel(ref, force=True)
    zray.get(signal.send.remote())
    assert zray.get(ref, timeout=30) == "unblocked"


def test_cancel_running_async_actor_call(cluster, tmp_path):
    @zray.remote
    class AsyncSleeper:
        async def sleep(self, started):
            open(started, "w").close()
            await asyncio.sleep(60)
            return "slept"

        async def ping(self):
            return "pong"

    started = str(tmp_path / "started")
    a = AsyncSleeper.remote()
    ref = a.sleep.remote(started)
    wait_for(lambda: os.path.exists(started), 15, "the async call to start")
    zray.cancel(ref)
    with pytest.raises(exceptions.TaskCancelledError):
        zray.get(ref, timeout=30)
    assert zray.get(a.ping.remote(), timeout=30) == "pong"


def test_running_sync_actor_call_is_not_interrupted(cluster):
    signal = Signal.remote()
    c = Counter.remote()
    ref = c.block.remote(signal)
    wait_for(lambda: zray.get(signal.num_waiters.remote()) == 1, 15, "the call to block")
    zray.cancel(ref)
    zray.get(signal.send.remote())
    assert zray.get(ref, timeout=30) == "unblocked"
    assert zray.get(c.incr.remote(), timeout=30) == 1


def test_infeasible_actor_warns_on_the_driver_and_stays_pending(capfd):
    @zray.remote(resources={"NoSuchThing": 1})
    class Impossible:
        def ping(self):
            return 1

    actor = Impossible.remote()
    assert "NoSuchThing" in capfd.readouterr().err
    ready, _ = zray.wait([actor.ping.remote()], timeout=0.5)
    assert ready == []
    zray.kill(actor)


def _split_first_argument(invoke):
    """Ray's __ray_invocation_decorator__: runs where .remote() is called."""
    def invocation(args, kwargs):
        return invoke([args[0], args[0]], {}), kwargs   # kwargs stay with the caller
    return invocation


def _join_two_arguments(method):
    def joined(self, b, c):
        return method(self, b + c)
    joined.__ray_invocation_decorator__ = _split_first_argument
    return joined


@zray.remote
class Decorated:
    @_join_two_arguments
    def add_one(self, x):
        return x + 1


def test_ray_invocation_decorator_wraps_the_callers_side(cluster):
    actor = Decorated.remote()
    ref, extra = actor.add_one.remote(3, kwarg=3)
    assert isinstance(ref, zray.ObjectRef) and extra == {"kwarg": 3}
    assert zray.get(ref, timeout=30) == 7
    # Handles looked up elsewhere carry the decorator too.
    named = Decorated.options(name="decorated-actor").remote()
    ref, _ = zray.get_actor("decorated-actor").add_one.remote(5)
    assert zray.get(ref, timeout=30) == 11
    zray.kill(named)
