"""Actor and task options beyond the basics, with Ray's behaviour:
concurrency groups (threaded and async actors), max_pending_calls,
accelerator_type, and a clear error for label_selector."""
from __future__ import annotations

import asyncio
import time

import pytest

import zray
from conftest import Barrier, Signal

CLUSTER = dict(num_cpus=2)

pytestmark = pytest.mark.timeout(60)


@zray.remote(concurrency_groups={"io": 2, "compute": 1})
class Grouped:
    @zray.method(concurrency_group="io")
    def io(self, barrier):
        # Returns only when both io calls are inside at once: the group has 2 threads.
        return zray.get(barrier.arrive.remote(10))

    @zray.method(concurrency_group="compute")
    def compute(self, signal):
        zray.get(signal.wait.remote())   # holds the compute group's only thread
        return "compute"

    def default(self):
        return "default"


@zray.remote(concurrency_groups={"io": 2})
class AsyncGrouped:
    def __init__(self):
        self.inside = self.most = 0

    @zray.method(concurrency_group="io")
    async def io(self):
        self.inside += 1
        self.most = max(self.most, self.inside)
        await asyncio.sleep(0.2)
        self.inside -= 1

    async def peak(self):
        return self.most

    async def ping(self):
        return "pong"

    @zray.method(concurrency_group="io")
    async def io_thread(self):
        import threading
        return threading.get_ident()

    async def default_thread(self):
        import threading
        return threading.get_ident()

    @zray.method(concurrency_group="io")
    async def block_io_loop(self, seconds):
        time.sleep(seconds)          # blocks the io group's event loop, not the default's
        return "unblocked"


@zray.remote
class Slow:
    def wait_for(self, signal):
        zray.get(signal.wait.remote())
        return "done"


def test_each_concurrency_group_has_its_own_threads(cluster):
    actor = Grouped.remote()
    signal = Signal.remote()
    blocked = actor.compute.remote(signal)          # occupies "compute"
    barrier = Barrier.remote(2)
    # Both io calls must be running at once for either to return.
    assert zray.get([actor.io.remote(barrier), actor.io.remote(barrier)], timeout=30) == [2, 2]
    assert zray.get(actor.default.remote(), timeout=30) == "default"   # the default group too
    assert not zray.wait([blocked], timeout=0.2)[0]
    zray.get(signal.send.remote())
    assert zray.get(blocked, timeout=30) == "compute"


def test_a_call_can_choose_its_group(cluster):
    actor = Grouped.remote()
    signal = Signal.remote()
    blocked = actor.compute.remote(signal)          # the compute group's only thread
    assert zray.get(actor.default.remote(), timeout=30) == "default"
    # Sent to "compute", default() waits behind the blocked call there.
    rerouted = actor.default.options(concurrency_group="compute").remote()
    assert not zray.wait([rerouted], timeout=0.5)[0]
    zray.get(signal.send.remote())
    assert zray.get([blocked, rerouted], timeout=30) == ["compute", "default"]


def test_an_unknown_group_is_refused_at_the_call(cluster):
    actor = Grouped.remote()
    with pytest.raises(ValueError, match="concurrency group 'nope'"):
        actor.default.options(concurrency_group="nope").remote()

    @zray.remote
    class Undeclared:
        @zray.method(concurrency_group="missing")
        def f(self):
            pass

    with pytest.raises(ValueError, match="'missing', which the actor does not define"):
        Undeclared.remote()
    with pytest.raises(ValueError, match="positive integer max concurrency"):
        Grouped.options(concurrency_groups={"io": 0}).remote()


def test_async_actor_groups_limit_their_calls(cluster):
    actor = AsyncGrouped.remote()
    zray.get([actor.io.remote() for _ in range(6)], timeout=30)
    assert zray.get(actor.peak.remote(), timeout=30) == 2
    assert zray.get(actor.ping.remote(), timeout=30) == "pong"


def test_async_actor_groups_run_on_event_loops_of_their_own(cluster):
    actor = AsyncGrouped.remote()
    io_thread, default_thread = zray.get(
        [actor.io_thread.remote(), actor.default_thread.remote()], timeout=30)
    assert io_thread != default_thread                      # Ray: a thread per group
    blocked = actor.block_io_loop.remote(3)
    time.sleep(0.3)
    assert zray.get(actor.ping.remote(), timeout=2) == "pong"   # the default loop is free
    assert zray.get(blocked, timeout=30) == "unblocked"


def test_max_pending_calls_refuses_calls_beyond_the_limit(cluster):
    actor = Slow.options(max_pending_calls=2).remote()
    zray.get(actor.__ray_ready__.remote(), timeout=30)
    signal = Signal.remote()
    first = [actor.wait_for.remote(signal) for _ in range(2)]
    with pytest.raises(zray.exceptions.PendingCallsLimitExceeded,
                       match="more than 2 tasks are queued"):
        actor.wait_for.remote(signal)
    zray.get(signal.send.remote())
    assert zray.get(first, timeout=30) == ["done", "done"]
    assert zray.get(actor.wait_for.remote(signal), timeout=30) == "done"   # room again
    with pytest.raises(ValueError, match="max_pending_calls"):
        Slow.options(max_pending_calls=0).remote()


def test_accelerator_type_needs_a_node_with_that_accelerator(cluster, capfd):
    task = zray.remote(lambda: 1).options(accelerator_type="A100").remote()
    assert not zray.wait([task], timeout=1.0)[0]
    time.sleep(0.2)
    assert "accelerator_type:A100" in capfd.readouterr().err
    zray.cancel(task)


def test_label_selector_is_refused_clearly(cluster):
    with pytest.raises(ValueError, match="label_selector is not supported"):
        zray.remote(lambda: 1).options(label_selector={"zone": "a"}).remote()


@zray.remote
class StartsWork:
    def __init__(self):
        self.ticks = 0
        asyncio.get_event_loop().create_task(self._tick())   # Ray: __init__ sees the actor's loop

    async def _tick(self):
        while True:
            self.ticks += 1
            await asyncio.sleep(0.01)

    async def ticks_so_far(self):
        return self.ticks


def test_an_async_actor_can_start_background_work_in_its_constructor(cluster):
    actor = StartsWork.remote()
    zray.get(actor.ticks_so_far.remote(), timeout=30)
    time.sleep(0.2)
    assert zray.get(actor.ticks_so_far.remote(), timeout=30) > 3
