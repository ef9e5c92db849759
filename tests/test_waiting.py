"""A caller blocked in get(), or a worker waiting for its next call, may spin
briefly, but a long wait must sleep: its CPU time stays small (real
processes)."""
import time

import psutil
import pytest

import zray
from conftest import Signal

pytestmark = pytest.mark.timeout(60)


def test_long_get_does_not_burn_the_callers_cpu(cluster):
    @zray.remote
    def quick():
        return 1

    for _ in range(200):                   # a run of fast replies: the caller spins for them
        assert zray.get(quick.remote()) == 1
    signal = Signal.remote()

    @zray.remote
    def wait_for_signal(sig):
        zray.get(sig.wait.remote())
        return 2

    pending = wait_for_signal.remote(signal)
    me = psutil.Process()
    cpu_before = sum(me.cpu_times()[:2])
    start = time.monotonic()
    with pytest.raises(zray.exceptions.GetTimeoutError):
        zray.get(pending, timeout=1.5)
    waited = time.monotonic() - start
    cpu_used = sum(me.cpu_times()[:2]) - cpu_before
    assert waited >= 1.4
    assert cpu_used < 0.3 * waited, f"{cpu_used:.2f}s of CPU while blocked {waited:.2f}s"
    zray.get(signal.send.remote())
    assert zray.get(pending, timeout=30) == 2


def test_threads_of_an_idle_actor_get_replies_without_waiting_for_a_tick(cluster):
    """An idle worker's main thread blocks on its own socket alone (io_loop
    "primary"); a thread of the actor that submits and waits meanwhile must
    wake it, not sit out the main thread's 50 ms tick per call."""
    @zray.remote
    def quick(i):
        return i

    @zray.remote(num_cpus=0)
    class Spawner:
        def __init__(self):
            self.in_calls_s = None

        def start(self, n):
            import threading

            def run():
                # Untimed first call: a lease or a worker start must not count.
                assert zray.get(quick.remote(-1)) == -1
                total = 0.0
                for i in range(n):
                    time.sleep(0.06)         # the main thread is surely blocked by now
                    begin = time.monotonic()
                    assert zray.get(quick.remote(i)) == i
                    total += time.monotonic() - begin
                self.in_calls_s = total
            threading.Thread(target=run, daemon=True).start()

        def in_calls(self):
            return self.in_calls_s

    spawner = Spawner.remote()
    zray.get(spawner.start.remote(20))       # returns at once: the main thread goes idle
    time.sleep(1.5)
    deadline = time.monotonic() + 30
    while zray.get(spawner.in_calls.remote()) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    in_calls = zray.get(spawner.in_calls.remote())
    assert in_calls is not None, "the actor's thread never finished its calls"
    # Without the wake-up each call waits up to a tick for the idle main thread.
    assert in_calls < 0.25, f"20 calls from an idle actor's thread took {in_calls:.2f}s"


@pytest.mark.parametrize("kind", ["plain", "async"])
def test_a_worker_stops_spinning_once_calls_stop(cluster, kind):
    """A worker handed calls back to back polls briefly for the next one
    (io_loop IDLE_SPIN_S) instead of blocking at once; when the calls stop,
    it must go back to sleep, not keep a core busy."""
    class Echo:
        def pid(self):
            import os
            return os.getpid()

        def echo(self, x):
            return x

    class AsyncEcho(Echo):
        async def echo(self, x):
            return x

    actor = zray.remote(num_cpus=0)(Echo if kind == "plain" else AsyncEcho).remote()
    worker = psutil.Process(zray.get(actor.pid.remote()))
    for i in range(500):                     # back-to-back calls: the worker spins between them
        assert zray.get(actor.echo.remote(i)) == i
    cpu_before = sum(worker.cpu_times()[:2])
    start = time.monotonic()
    time.sleep(1.5)
    idle = time.monotonic() - start
    cpu_used = sum(worker.cpu_times()[:2]) - cpu_before
    assert cpu_used < 0.1 * idle, f"an idle {kind} actor used {cpu_used:.2f}s of CPU in {idle:.2f}s"
    assert zray.get(actor.echo.remote("still there"), timeout=10) == "still there"
