"""What tasks print reaches the driver's stdout, prefixed with the worker pid."""
import pytest

import zray

pytestmark = pytest.mark.timeout(60)


def test_task_prints_are_forwarded_to_driver(capsys):
    zray.init(num_cpus=1)
    try:
        @zray.remote
        def shout(token):
            import os
            print("token", token)
            return os.getpid()

        pid = zray.get(shout.remote("f7c1a"))
    finally:
        zray.shutdown()   # flushes what the monitor has not printed yet
    out = capsys.readouterr().out
    assert f"(pid={pid}) token f7c1a" in out


def test_log_to_driver_false_keeps_console_quiet(capsys):
    zray.init(num_cpus=1, log_to_driver=False)
    try:
        @zray.remote
        def shout():
            print("should-not-appear-9d2")
        zray.get(shout.remote())
    finally:
        zray.shutdown()
    assert "should-not-appear-9d2" not in capsys.readouterr().out
