"""`zray start/status/stop` and `init(address="auto")` with real processes,
plus robustness of the raylet and GCS against garbage from the network."""
import os
import socket
import subprocess
import sys
import time

import psutil
import pytest
import zmq

from conftest import pid_running

pytestmark = pytest.mark.timeout(120)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_driver(body: str) -> str:
    """Run ``body`` as a driver joining the started cluster; its stdout."""
    program = "import zray\nzray.init(address='auto')\n" + body + "zray.shutdown()\n"
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def _zray(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "zray.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture()
def started_cluster():
    port = _free_port()
    out = _zray("start", "--head", "--port", str(port), "--num-cpus", "2",
                "--resources", '{"Custom": 3}', "--object-store-memory", str(256 << 20))
    assert out.returncode == 0, out.stderr
    from zray.node import launcher
    import json
    with open(launcher.CURRENT_CLUSTER_FILE) as f:
        record = json.load(f)
    yield port, record
    _zray("stop")
    launcher.stop_pids([p for p in record["pids"] if psutil.pid_exists(p)])


def test_start_status_connect_stop(started_cluster):
    port, record = started_cluster
    status = _zray("status")
    assert status.returncode == 0, status.stderr
    assert "1 node(s) alive" in status.stdout and "Custom: 3 / 3" in status.stdout
    assert _run_driver("@zray.remote(resources={'Custom': 1})\n"
                       "def f(x): return x * 2\n"
                       "print(zray.get(f.remote(21)))\n") == "42"
    # The started node outlives the driver that used it.
    assert all(psutil.pid_exists(pid) for pid in record["pids"])
    stop = _zray("stop")
    assert stop.returncode == 0 and "Stopped 2" in stop.stdout
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(pid_running(p) for p in record["pids"]):
        time.sleep(0.05)
    assert not any(pid_running(p) for p in record["pids"])


def test_init_auto_without_cluster_is_a_clear_error():
    _zray("stop")
    run = subprocess.run([sys.executable, "-c", "import zray; zray.init(address='auto')"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "Could not find any running zray instance" in run.stderr


def test_start_rejects_bad_resources_json():
    out = _zray("start", "--head", "--resources", "[1, 2")
    assert out.returncode != 0 and "--resources" in out.stderr


def test_garbage_frames_do_not_crash_raylet_or_gcs(started_cluster):
    port, record = started_cluster
    ctx = zmq.Context.instance()
    targets = [record["raylet_ipc"], f"tcp://127.0.0.1:{port}"]
    for endpoint in targets:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        for frame in (b"", b"\xa7", b"\xa7\x0c" + b"\x80\x05junk", os.urandom(64),
                      b"\xa7\x0c" + __import__("pickle").dumps((1, 2, 3))):
            sock.send(frame)
        sock.send_multipart([b"a", b"b", b"c"])
        # Well-formed placement-group messages with nonsense fields.
        from zray.sockets import messages as m
        for message in (m.PrepareBundles(b"g", "x", "not bundles"),
                        m.PrepareBundles(b"g", 1, ((0, {"CPU": -5}),)),
                        m.CommitBundles(b"g", 1, 7), m.ReturnBundles(b"g", None),
                        m.BundlesPrepared(b"g", 1, True, ""), m.BundlesCommitted(b"g", 1, [], 3)):
            sock.send(m.encode(message))
        sock.close()
    assert _run_driver("@zray.remote\n"
                       "def f(): return 'alive'\n"
                       "print(zray.get(f.remote(), timeout=30))\n") == "alive"
    assert all(pid_running(pid) for pid in record["pids"])


def test_dead_sessions_are_pruned_keeping_the_newest(tmp_path, monkeypatch):
    from zray.node import launcher
    import json
    monkeypatch.setattr(launcher, "ROOT", str(tmp_path))
    dead_pid = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_pid.wait()
    for i in range(5):
        session = tmp_path / f"session_{i:02d}"
        session.mkdir()
        (session / launcher.PIDS_FILE).write_text(json.dumps([dead_pid.pid]))
    alive = tmp_path / "session_99"
    alive.mkdir()
    (alive / launcher.PIDS_FILE).write_text(json.dumps([os.getpid()]))
    assert launcher.prune_dead_sessions(keep=2) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["session_03", "session_04", "session_99"]


def test_status_shows_placement_groups_and_what_they_reserve(started_cluster):
    _run_driver("from zray.util.placement_group import placement_group\n"
                "pg = placement_group([{'CPU': 1}], name='kept', lifetime='detached')\n"
                "assert pg.wait(20)\n")
    status = _zray("status")
    assert status.returncode == 0, status.stderr
    assert "CPU: 1 / 2 (1 reserved in placement groups)" in status.stdout, status.stdout
    assert "_group_" not in status.stdout
    assert "Placement groups: 1" in status.stdout
    assert "CREATED PACK name=kept bundles=[{'CPU': 1.0}]" in status.stdout


def test_list_cli_shows_state_with_filters(started_cluster):
    _run_driver("@zray.remote\n"
                "class Kept:\n"
                "    def ping(self): return 1\n"
                "k = Kept.options(name='kept-actor', lifetime='detached').remote()\n"
                "zray.get(k.ping.remote())\n"
                "@zray.remote\n"
                "def cli_listed_task(): return 1\n"
                "zray.get(cli_listed_task.remote())\n")
    listed = _zray("list", "actors", "--filter", "name=kept-actor")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("1 actors") and "state=ALIVE" in listed.stdout
    assert "class_name=Kept" in listed.stdout
    nodes = _zray("list", "nodes", "--json")
    assert nodes.returncode == 0 and '"state": "ALIVE"' in nodes.stdout
    tasks = _zray("list", "tasks", "--filter", "name=cli_listed_task")
    assert tasks.returncode == 0 and tasks.stdout.startswith("1 tasks"), tasks.stderr
    assert "state=FINISHED" in tasks.stdout or "state=RUNNING" in tasks.stdout
    bad = _zray("list", "actors", "--filter", "nonsense")
    assert bad.returncode != 0 and "KEY=VALUE" in bad.stderr


def test_memory_cli_lists_a_drivers_objects(started_cluster):
    out = _run_driver(
        "import subprocess, sys\n"
        "import numpy as np\n"
        "ref = zray.put(np.ones(1 << 18))\n"
        "small = zray.put('x')\n"
        "run = subprocess.run([sys.executable, '-m', 'zray.cli', 'memory'], capture_output=True,"
        " text=True, timeout=60)\n"
        "assert run.returncode == 0, run.stderr\n"
        "print(ref.hex(), small.hex())\n"
        "print(run.stdout)\n")
    first, text = out.split("\n", 1)
    big_hex, small_hex = first.split()
    big_line = next(line for line in text.splitlines() if line.startswith(big_hex))
    assert "shm on node" in big_line and "local (pid" in big_line
    small_line = next(line for line in text.splitlines() if line.startswith(small_hex))
    assert "in-process (pid" in small_line
    assert "spilled in total:" in text
    stats = _zray("memory", "--stats-only")
    assert stats.returncode == 0 and stats.stdout.startswith("node ")
