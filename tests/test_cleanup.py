"""No process outlives the cluster that started it: after ``zray.shutdown()``,
after a normal driver exit, and after the driver is killed with SIGKILL.

Only pids recorded as descendants of a driver this test started are ever
signalled here."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

import zray
from conftest import pid_running, wait_for

pytestmark = pytest.mark.timeout(90)


def _describe(pids) -> str:
    out = []
    for pid in pids:
        try:
            out.append(f"{pid}: {' '.join(psutil.Process(pid).cmdline())[:120]}")
        except psutil.Error:
            out.append(f"{pid}: (gone)")
    return "; ".join(out)


def _shm_dirs(session_dir: str) -> str:
    return os.path.join("/dev/shm", "zray-" + os.path.basename(session_dir))


@zray.remote
def pid_of_task():
    return os.getpid()


@zray.remote
class PidActor:
    def pid(self):
        return os.getpid()


def _use_cluster():
    """Run tasks and actors so the cluster has workers of every kind."""
    actors = [PidActor.remote() for _ in range(2)]
    pids = set(zray.get([a.pid.remote() for a in actors], timeout=30))
    pids |= set(zray.get([pid_of_task.remote() for _ in range(6)], timeout=30))
    return actors, pids


def test_shutdown_leaves_no_process(no_cluster):
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    ctx = zray.init(num_cpus=2)
    actors, worker_pids = _use_cluster()
    started = {p.pid for p in psutil.Process().children(recursive=True)} - before
    kinds = " ".join(_describe(started).split())
    assert "zray.gcs.server" in kinds and "zray.node.raylet" in kinds
    assert "zray.node.forkserver" in kinds
    assert worker_pids <= started, "workers are descendants of the driver"
    shm = _shm_dirs(ctx["session_dir"])
    assert os.path.isdir(shm)
    del actors

    zray.shutdown()
    left = lambda: [pid for pid in started if pid_running(pid)]  # noqa: E731
    wait_for(lambda: not left(), 15, f"processes to exit after shutdown: {_describe(left())}")
    assert not os.path.exists(shm), "the shared-memory arena outlived the cluster"


def _start_driver(tmp_path, body: str):
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent("""
        import os, sys, time
        import zray

        @zray.remote
        def pid_of_task():
            return os.getpid()

        @zray.remote
        class PidActor:
            def pid(self):
                return os.getpid()

        zray.init(num_cpus=2)
        actors = [PidActor.remote() for _ in range(2)]
        detached = PidActor.options(name="survivor", lifetime="detached").remote()
        pids = zray.get([a.pid.remote() for a in actors + [detached]], timeout=30)
        pids += zray.get([pid_of_task.remote() for _ in range(4)], timeout=30)

        @zray.remote(num_cpus=0)
        def busy(path):
            open(path, "w").close()
            time.sleep(600)

        running = [busy.remote(f"started-{i}") for i in range(2)]
        while not all(os.path.exists(f"started-{i}") for i in range(2)):
            time.sleep(0.01)
        print("READY", " ".join(map(str, pids)), flush=True)
    """) + textwrap.dedent(body))
    proc = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(tmp_path))
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        proc.kill()
        out, err = proc.communicate(timeout=10)
        pytest.fail(f"driver did not start: {line}{out}{err}")
    worker_pids = {int(p) for p in line.split()[1:]}
    return proc, worker_pids


def _descendants(pid: int) -> set:
    return {p.pid for p in psutil.Process(pid).children(recursive=True)}


def test_sigkilled_driver_takes_its_cluster_down(tmp_path, no_cluster):
    proc, worker_pids = _start_driver(tmp_path, "time.sleep(600)\n")
    try:
        started = _descendants(proc.pid)
        assert worker_pids <= started and len(started) >= 3 + len(worker_pids)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        left = lambda: [pid for pid in started if pid_running(pid)]  # noqa: E731
        wait_for(lambda: not left(), 15,
                 f"the cluster of a SIGKILLed driver to exit: {_describe(left())}")
    finally:
        _kill_leftovers(proc, locals().get("started", set()))


def test_driver_exiting_without_shutdown_cleans_up(tmp_path, no_cluster):
    proc, worker_pids = _start_driver(tmp_path, "sys.stdin.readline()\n")
    started = set()
    try:
        started = _descendants(proc.pid)
        proc.communicate(timeout=30)  # closes stdin: the driver's readline returns
        left = lambda: [pid for pid in started if pid_running(pid)]  # noqa: E731
        wait_for(lambda: not left(), 15, f"processes to exit after the driver: {_describe(left())}")
        assert proc.returncode == 0
    finally:
        _kill_leftovers(proc, started)


def test_driver_raising_cleans_up(tmp_path, no_cluster):
    proc, _ = _start_driver(tmp_path, "sys.stdin.readline()\nraise SystemExit(3)\n")
    started = set()
    try:
        started = _descendants(proc.pid)
        proc.communicate(timeout=30)
        assert proc.returncode == 3
        left = lambda: [pid for pid in started if pid_running(pid)]  # noqa: E731
        wait_for(lambda: not left(), 15, f"processes to exit after the driver: {_describe(left())}")
    finally:
        _kill_leftovers(proc, started)


def _kill_leftovers(proc, pids) -> None:
    """Failure path only: end what this test started, by pid."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
    for pid in pids:
        if pid_running(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
