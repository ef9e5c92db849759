"""A caller blocked in get() may spin briefly for a fast reply, but a long
wait must sleep: its CPU time stays small (real processes)."""
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
