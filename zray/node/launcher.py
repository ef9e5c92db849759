"""Starting and stopping the processes of a node: session directory, GCS,
raylet.  Used by ``zray.init()`` (embedded cluster, children watch the
driver's pid) and by ``zray start`` (daemons that outlive the CLI)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import psutil

from ..pids import pid_alive
from .gc_trigger import DEFAULTS as GC_DEFAULTS

# Under Ray's RAY_TMPDIR when set.  Not "zray": that would shadow the package for scripts in /tmp.
ROOT = os.path.join(os.environ.get("RAY_TMPDIR") or tempfile.gettempdir(), "zray-sessions")
CURRENT_CLUSTER_FILE = os.path.join(ROOT, "zray_current_cluster")
STOP_TIMEOUT_S = 3.0


def default_object_store_memory() -> int:
    # Ray's default: 30% of RAM, capped (here at 8 GiB).
    return int(min(psutil.virtual_memory().total * 0.3, 8 << 30)) & ~4095


PIDS_FILE = "pids.json"
KEEP_DEAD_SESSIONS = 10


def prune_dead_sessions(keep: int = KEEP_DEAD_SESSIONS) -> int:
    """Remove the session directories (logs) of nodes whose processes are all
    gone, keeping the ``keep`` newest for post-mortems; returns how many."""
    try:
        names = sorted(os.listdir(ROOT))
    except FileNotFoundError:
        return 0
    dead = []
    for name in names:
        path = os.path.join(ROOT, name)
        try:
            with open(os.path.join(path, PIDS_FILE)) as f:
                pids = json.load(f)
        except (OSError, ValueError):
            continue
        if not any(pid_alive(pid) for pid in pids):
            dead.append(path)
    doomed = dead[:-keep] if keep else dead
    for path in doomed:
        remove_session(path)
    return len(doomed)


def make_session_dir() -> str:
    os.makedirs(ROOT, mode=0o700, exist_ok=True)
    prune_dead_sessions()
    session = tempfile.mkdtemp(prefix=time.strftime("session_%Y%m%d_%H%M%S_"), dir=ROOT)
    os.chmod(session, 0o700)
    for sub in ("sockets", "logs"):
        os.makedirs(os.path.join(session, sub), mode=0o700)
    return session


class NodeProcesses:
    """The GCS (head only) and raylet processes of one node."""

    def __init__(self, session_dir: str, procs: list, gcs_ready: str | None, raylet_ready: str):
        self.session_dir = session_dir
        self.procs = procs
        self.gcs_ready = gcs_ready
        self.raylet_ready = raylet_ready
        self.raylet_ipc = "ipc://" + os.path.join(session_dir, "sockets", "raylet")

    def wait_ready(self, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{_name(proc)} exited with code {proc.returncode} during "
                                       f"startup; see logs in {self.session_dir}/logs")
            try:
                with open(self.raylet_ready) as f:
                    return json.load(f)
            except (OSError, ValueError):
                time.sleep(0.005)
        raise TimeoutError(f"the node did not start within {timeout}s; logs: {self.session_dir}/logs")

    def stop(self) -> None:
        stop_pids([p.pid for p in self.procs])
        for proc in self.procs:
            try:
                proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass
        remove_session(self.session_dir)


def _name(proc) -> str:
    return "GCS" if "zray.gcs.server" in " ".join(proc.args) else "raylet"


def start_node(*, head: bool, session_dir: str, num_cpus: float, num_gpus: float = 0,
               resources: dict | None = None, object_store_memory: int | None = None,
               node_ip: str = "127.0.0.1", gcs_port: int = 0, gcs_address: str | None = None,
               gcs_pub_address: str | None = None, watch_pid: int = 0,
               system_config: dict | None = None) -> NodeProcesses:
    logs = os.path.join(session_dir, "logs")
    procs = []
    gcs_ready = None
    common = [sys.executable, "-m"]
    if head:
        gcs_ready = os.path.join(session_dir, "gcs_ready.json")
        cmd = common + ["zray.gcs.server", "--session-dir", session_dir, "--host", node_ip,
                        "--port", str(gcs_port), "--ready-file", gcs_ready]
        if watch_pid:
            cmd += ["--watch-pid", str(watch_pid)]
        procs.append(_spawn(cmd, os.path.join(logs, "gcs.out"), detach=not watch_pid))
    raylet_ready = os.path.join(session_dir, "raylet_ready.json")
    store = object_store_memory or default_object_store_memory()
    cmd = common + ["zray.node.raylet", "--session-dir", session_dir, "--node-ip", node_ip,
                    "--num-cpus", str(num_cpus), "--num-gpus", str(num_gpus or 0),
                    "--resources", json.dumps(resources or {}),
                    "--memory", str(int(psutil.virtual_memory().available * 0.7)),
                    "--object-store-memory", str(int(store) & ~4095), "--ready-file", raylet_ready]
    full_timeout = (system_config or {}).get("object_store_full_timeout_s")
    if full_timeout is not None:
        cmd += ["--object-store-full-timeout-s", str(float(full_timeout))]
    spilling = (system_config or {}).get("object_spilling_config")
    if spilling is not None:
        cmd += ["--spill-dir", spill_directory(spilling)]
    gc_knobs = {key: value for key, value in (system_config or {}).items() if key in GC_DEFAULTS}
    if gc_knobs:
        cmd += ["--system-config", json.dumps(gc_knobs)]
    if head:
        cmd += ["--gcs-ready-file", gcs_ready]
    else:
        cmd += ["--gcs-address", gcs_address, "--gcs-pub-address", gcs_pub_address]
    if watch_pid:
        cmd += ["--watch-pid", str(watch_pid)]
    procs.append(_spawn(cmd, os.path.join(logs, "raylet.out"), detach=not watch_pid))
    with open(os.path.join(session_dir, PIDS_FILE), "w") as f:
        json.dump([p.pid for p in procs], f)
    return NodeProcesses(session_dir, procs, gcs_ready, raylet_ready)


def spill_directory(config) -> str:
    """The directory of Ray's ``object_spilling_config`` (a JSON string or dict
    ``{"type": "filesystem", "params": {"directory_path": ...}}``); ValueError
    naming what is wrong otherwise."""
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except ValueError as exc:
            raise ValueError(f"object_spilling_config is not valid JSON: {exc}") from None
    if not isinstance(config, dict) or config.get("type") != "filesystem":
        raise ValueError("object_spilling_config must be {\"type\": \"filesystem\", \"params\": "
                         "{\"directory_path\": ...}} (zray spills to LMDB files in that directory)")
    path = (config.get("params") or {}).get("directory_path")
    if isinstance(path, (list, tuple)) and path:
        path = path[0]
    if not isinstance(path, str) or not path:
        raise ValueError("object_spilling_config needs params.directory_path (a directory)")
    return os.path.abspath(path)


def _spawn(cmd, out_path, detach: bool):
    out = open(out_path, "ab")
    try:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                close_fds=True, start_new_session=detach)
    finally:
        out.close()


def stop_pids(pids, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, then SIGKILL after ``timeout``: only the pids given."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if pid_alive(pid)]
        if alive:
            time.sleep(0.02)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def remove_session(session_dir: str) -> None:
    shutil.rmtree(session_dir, ignore_errors=True)
    shutil.rmtree(os.path.join("/dev/shm", f"zray-{os.path.basename(session_dir)}"),
                  ignore_errors=True)


# ---------------------------------------------------------- started clusters ---
def record_cluster(session_dir: str, info: dict, pids: list, embedded: bool = False) -> None:
    """Remember a node so other drivers find it: init(address=...) and
    init("auto").  A `zray start` node is also this host's current cluster,
    which `zray stop` ends; an embedded one (zray.init()) lives and ends with
    its driver, as in Ray."""
    record = {"session_dir": session_dir, "pids": pids, "gcs_address": info["gcs_address"],
              "raylet_ipc": info["ipc"], "time": time.time(), "embedded": embedded}
    with open(os.path.join(session_dir, "node.json"), "w") as f:
        json.dump(record, f)
    if embedded:
        return
    tmp = CURRENT_CLUSTER_FILE + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.replace(tmp, CURRENT_CLUSTER_FILE)


def stop_recorded_clusters() -> int:
    count = 0
    if not os.path.isdir(ROOT):
        return 0
    for name in os.listdir(ROOT):
        path = os.path.join(ROOT, name, "node.json")
        try:
            with open(path) as f:
                record = json.load(f)
        except (OSError, ValueError):
            continue
        if record.get("embedded"):
            continue      # a driver's own cluster: it ends with that driver
        alive = [pid for pid in record["pids"] if pid_alive(pid)]
        stop_pids(alive)
        count += len(alive)
        remove_session(record["session_dir"])
    try:
        os.remove(CURRENT_CLUSTER_FILE)
    except FileNotFoundError:
        pass
    return count


def find_cluster(address: str):
    """(session_dir, raylet endpoint) of a running node on this host: for
    "auto", the `zray start` node (as Ray's "auto" finds only `ray start`
    clusters); for an address, the node of the cluster whose GCS is there,
    also one that a driver's zray.init() started."""
    current = _read_record(CURRENT_CLUSTER_FILE)
    if current is not None and not _running(current):
        current = None
    if address == "auto":
        if current is None:
            raise ConnectionError("Could not find any running zray instance. Start one with "
                                  "`zray start --head`.")
        return current["session_dir"], current["raylet_ipc"]
    wanted = address if address.startswith("tcp://") else f"tcp://{address}"
    candidates = ([current] if current else []) + _running_records()
    for record in candidates:
        if record["gcs_address"] == wanted:
            return record["session_dir"], record["raylet_ipc"]
    raise ConnectionError(f"no running zray node of the cluster at {address} on this host "
                          f"(a driver joins through a node on its own host)")


def _read_record(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _running(record: dict) -> bool:
    return all(pid_alive(pid) for pid in record["pids"])


def _running_records() -> list:
    """Node records in this host's session directories whose processes run."""
    if not os.path.isdir(ROOT):
        return []
    records = (_read_record(os.path.join(ROOT, name, "node.json")) for name in os.listdir(ROOT))
    return [r for r in records if r is not None and _running(r)]


def query_pub_address(gcs_address: str, timeout: float = 10.0) -> str:
    from ..gcs.client import GcsClient
    from ..sockets.messages import GcsMethod
    client = GcsClient(gcs_address, timeout_s=timeout)
    try:
        value = client.call(GcsMethod.KV_GET, "cluster", b"pub_address")
    finally:
        client.close()
    if not value:
        raise ConnectionError(f"the GCS at {gcs_address} did not report its broadcast address")
    return value.decode()
