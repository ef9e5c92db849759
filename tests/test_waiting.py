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
