"""Tests for the GCS process (zray.gcs.server) through real sockets.

Each test starts ``python -m zray.gcs.server`` in a temporary session dir; the
fixture always kills what it started, by pid.  Raylets and workers are played
by sockets the test owns.  Every wait has a deadline.
"""

import json
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import zmq

from zray.gcs import actor_manager as am
from zray.gcs.client import GcsClient
from zray.gcs.errors import GcsError, GcsErrorCode
from zray.sockets import messages as msg
from zray.sockets import transport
from zray.sockets.messages import GcsMethod as M

STARTUP_TIMEOUT_S = 10.0
EVENT_TIMEOUT_S = 5.0
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wait_until(predicate, timeout_s=EVENT_TIMEOUT_S, what="condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def receive(sock, timeout_s=EVENT_TIMEOUT_S, accept=lambda message: True):
    """The first decoded message on ``sock`` that ``accept`` takes, within the deadline.
    ROUTER messages come back as (identity, message)."""
    deadline = time.monotonic() + timeout_s
    while True:
        remaining_ms = (deadline - time.monotonic()) * 1000
        if remaining_ms <= 0 or not sock.poll(remaining_ms):
            raise AssertionError(f"no matching message within {timeout_s}s")
        frames = sock.recv_multipart()
        message = msg.decode(frames[-1])
        if sock.type == zmq.ROUTER:
            message = (frames[0], message)
        if accept(message):
            return message


class GcsProcess:
    def __init__(self, proc, ready, session_dir):
        self.proc = proc
        self.gcs_address = ready["gcs_address"]
        self.pub_address = ready["pub_address"]
        self.session_dir = session_dir
        assert ready["pid"] == proc.pid

    def log(self):
        path = os.path.join(self.session_dir, "logs", "gcs.log")
        return open(path).read() if os.path.exists(path) else ""


@pytest.fixture
def start_gcs(tmp_path):
    """start_gcs(storage_dir=None, watch_pid=None, node_timeout_s=10) -> GcsProcess."""
    started = []
    count = 0

    def start(*, storage_dir=None, watch_pid=None, node_timeout_s=10.0):
        nonlocal count
        count += 1
        session_dir = tmp_path / f"session{count}"
        session_dir.mkdir()
        ready_file = session_dir / "gcs_ready.json"
        cmd = [sys.executable, "-m", "zray.gcs.server", "--session-dir", str(session_dir),
               "--host", "127.0.0.1", "--port", "0", "--ready-file", str(ready_file),
               "--node-timeout-s", str(node_timeout_s)]
        if storage_dir:
            cmd += ["--storage-dir", str(storage_dir)]
        if watch_pid:
            cmd += ["--watch-pid", str(watch_pid)]
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT)
        started.append(proc)
        wait_until(lambda: ready_file.exists() or proc.poll() is not None,
                   STARTUP_TIMEOUT_S, "the GCS ready file")
        assert proc.poll() is None, f"GCS exited with {proc.returncode}"
        return GcsProcess(proc, json.loads(ready_file.read_text()), str(session_dir))

    yield start
    for proc in started:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


@pytest.fixture
def sockets():
    """Test-owned zmq sockets, closed at teardown."""
    owned = []

    def track(sock):
        owned.append(sock)
        return sock
    yield track
    for sock in owned:
        sock.close(linger=0)


@pytest.fixture
def client_for():
    clients = []

    def make(gcs, timeout_s=5.0):
        clients.append(GcsClient(gcs.gcs_address, timeout_s))
        return clients[-1]
    yield make
    for client in clients:
        client.close()


def node_dict(node_id, raylet_endpoint="tcp://127.0.0.1:9", cpus=4):
    return {"node_id": node_id, "node_ip": "127.0.0.1", "raylet_endpoint": raylet_endpoint,
            "resources_total": {"CPU": cpus}, "object_store_memory": 1 << 20}


def subscribe(gcs, sockets, client, node_id, *topics):
    """A SUB on the GCS PUB that is known to be receiving: it keeps reporting
    changing resources for ``node_id`` until a ResourceView comes through."""
    sub = sockets(transport.subscriber([msg.RESOURCE_TOPIC, *topics]))
    sub.connect(gcs.pub_address)
    deadline = time.monotonic() + EVENT_TIMEOUT_S
    available = 0
    while time.monotonic() < deadline:
        available += 1
        client.send(msg.ReportResources(node_id, {"CPU": available % 4}, {"CPU": 4}))
        if sub.poll(200):
            receive(sub, accept=lambda m: isinstance(m, msg.ResourceView))
            return sub
    raise AssertionError("the subscriber never received a ResourceView")


def fake_endpoint(sockets):
    """A ROUTER playing a raylet or a worker; returns (socket, endpoint)."""
    sock = sockets(transport.router())
    return sock, transport.bind_tcp(sock, "127.0.0.1", 0)


# --------------------------------------------------------------- tables ---
def test_kv_round_trip(start_gcs, client_for):
    client = client_for(start_gcs())
    assert client.call(M.KV_PUT, "fn", b"key", b"v1", False) is True
    assert client.call(M.KV_PUT, "fn", b"key", b"v2", False) is False
    assert client.call(M.KV_GET, "fn", b"key") == b"v1"
    assert client.call(M.KV_PUT, "fn", b"key", b"v3", True) is False
    assert client.call(M.KV_GET, "fn", b"key") == b"v3"
    assert client.call(M.KV_GET, "other", b"key") is None
    client.call(M.KV_PUT, "fn", b"key2", b"x", True)
    client.call(M.KV_PUT, "fn", b"zzz", b"x", True)
    assert client.call(M.KV_KEYS, "fn", b"key") == [b"key", b"key2"]
    assert client.call(M.KV_DEL, "fn", b"key") == 1
    assert client.call(M.KV_DEL, "fn", b"key") == 0
    assert client.call(M.KV_KEYS, "fn", b"") == [b"key2", b"zzz"]


def test_tables_survive_a_restart(start_gcs, client_for, tmp_path):
    storage = tmp_path / "storage"
    first = start_gcs(storage_dir=storage)
    client = client_for(first)
    assert [client.call(M.REGISTER_JOB, {"driver_pid": 1}) for _ in range(3)] == [1, 2, 3]
    client.call(M.KV_PUT, "ns", b"k", b"kept", True)
    client.call(M.REGISTER_NODE, node_dict(b"N" * 16))
    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(timeout=5) == 0
    client = client_for(start_gcs(storage_dir=storage))
    assert client.call(M.KV_GET, "ns", b"k") == b"kept"
    assert client.call(M.REGISTER_JOB, {}) == 4
    assert [n["node_id"] for n in client.call(M.GET_ALL_NODES)] == [b"N" * 16]


def _gcs_with_played_raylet(start_gcs, client_for, sockets, storage):
    """A GCS keeping its tables in ``storage`` and a 4-CPU node whose raylet
    the test plays on a real ROUTER: (gcs, client, raylet socket, node id)."""
    gcs = start_gcs(storage_dir=storage)
    client = client_for(gcs)
    raylet = sockets(transport.router())
    endpoint = transport.bind_tcp(raylet, "127.0.0.1")
    node_id = b"R" * 16
    client.call(M.REGISTER_NODE, node_dict(node_id, raylet_endpoint=endpoint, cpus=4))
    return gcs, client, raylet, node_id


def test_a_placement_group_is_reserved_by_two_phase_commit_and_kept_across_a_restart(
        start_gcs, client_for, sockets, tmp_path):
    """The test plays the raylet on a real ROUTER: it refuses the first prepare,
    accepts the retry, acks the commit; the group survives a GCS restart."""
    storage = tmp_path / "storage"
    gcs, client, raylet, node_id = _gcs_with_played_raylet(start_gcs, client_for, sockets, storage)
    client.call(M.CREATE_PLACEMENT_GROUP, {"pg_id": b"G" * 16, "bundles": [{"CPU": 2}],
                                           "strategy": "PACK", "job_id": b"\1\0\0\0",
                                           "name": "kept", "namespace": "ns"})
    is_prepare = lambda m: isinstance(m[1], msg.PrepareBundles)   # noqa: E731
    gcs_identity, prepare = receive(raylet, accept=is_prepare)
    assert prepare.pg_id == b"G" * 16 and prepare.bundles == ((0, {"CPU": 2.0}),)
    raylet.send_multipart([gcs_identity, msg.encode(msg.BundlesPrepared(
        prepare.pg_id, prepare.attempt, False, "busy"))])
    _, returned = receive(raylet, accept=lambda m: isinstance(m[1], msg.ReturnBundles))
    assert returned.indices == (0,)
    _, retry = receive(raylet, accept=is_prepare)          # after the next reports
    assert retry.attempt == prepare.attempt + 1
    assert client.call(M.GET_PLACEMENT_GROUP, b"G" * 16)["state"] == "PENDING"
    raylet.send_multipart([gcs_identity, msg.encode(msg.BundlesPrepared(
        retry.pg_id, retry.attempt, True, ""))])
    _, commit = receive(raylet, accept=lambda m: isinstance(m[1], msg.CommitBundles))
    raylet.send_multipart([gcs_identity, msg.encode(msg.BundlesCommitted(
        commit.pg_id, commit.attempt, {"CPU": 2.0, f"CPU_group_{'47' * 16}": 2.0},
        {"CPU": 4.0, f"CPU_group_{'47' * 16}": 2.0}))])
    assert client.call(M.WAIT_PLACEMENT_GROUP_READY, b"G" * 16, 5.0) is True
    assert client.call(M.GET_CLUSTER_RESOURCES)[1]["CPU"] == 2.0   # the commit's report
    gcs.proc.send_signal(signal.SIGTERM)
    assert gcs.proc.wait(timeout=5) == 0
    client = client_for(start_gcs(storage_dir=storage))
    record = client.call(M.GET_PLACEMENT_GROUP, None, "kept", "ns")
    assert record["state"] == "CREATED" and record["bundle_nodes"] == [node_id]


def test_after_a_restart_raylets_return_the_bundles_the_table_does_not_know(
        start_gcs, client_for, sockets, tmp_path):
    """A GCS killed between prepare and commit: the restarted GCS tells the raylet
    which bundles to keep (the committed group's) before it prepares anew."""
    storage = tmp_path / "storage"
    gcs, client, raylet, node_id = _gcs_with_played_raylet(start_gcs, client_for, sockets, storage)

    def create(pg_id, commit):
        client.call(M.CREATE_PLACEMENT_GROUP, {"pg_id": pg_id, "bundles": [{"CPU": 1}],
                                               "strategy": "PACK", "job_id": b"\1\0\0\0"})
        gcs_identity, prepare = receive(raylet, accept=lambda m: isinstance(m[1], msg.PrepareBundles))
        raylet.send_multipart([gcs_identity, msg.encode(msg.BundlesPrepared(
            pg_id, prepare.attempt, True, ""))])
        _, commit_msg = receive(raylet, accept=lambda m: isinstance(m[1], msg.CommitBundles))
        if commit:
            raylet.send_multipart([gcs_identity, msg.encode(msg.BundlesCommitted(
                pg_id, commit_msg.attempt, {"CPU": 3.0}, {"CPU": 4.0}))])
            assert client.call(M.WAIT_PLACEMENT_GROUP_READY, pg_id, 5.0) is True

    create(b"K" * 16, commit=True)
    create(b"P" * 16, commit=False)      # prepared and committing when the GCS dies
    gcs.proc.kill()
    gcs.proc.wait(timeout=5)
    start_gcs(storage_dir=storage)
    bundle_messages = (msg.ReleaseUnusedBundles, msg.PrepareBundles, msg.CommitBundles)
    _, first = receive(raylet, accept=lambda m: isinstance(m[1], bundle_messages))
    assert first == msg.ReleaseUnusedBundles(((b"K" * 16, 0),))
    _, again = receive(raylet, accept=lambda m: isinstance(m[1], bundle_messages))
    assert isinstance(again, msg.PrepareBundles) and again.pg_id == b"P" * 16


# ---------------------------------------------------------------- nodes ---
def test_register_node_is_listed_summed_and_published(start_gcs, client_for, sockets):
    gcs = start_gcs()
    client = client_for(gcs)
    client.call(M.REGISTER_NODE, node_dict(b"A" * 16, cpus=4))
    sub = subscribe(gcs, sockets, client, b"A" * 16, msg.NODE_TOPIC)
    client.send(msg.ReportResources(b"A" * 16, {"CPU": 1}, {"CPU": 4}))
    client.call(M.REGISTER_NODE, node_dict(b"B" * 16, cpus=2))
    changed = receive(sub, accept=lambda m: isinstance(m, msg.NodeChanged))
    assert changed.node["node_id"] == b"B" * 16 and changed.node["state"] == "ALIVE"
    nodes = {n["node_id"]: n for n in client.call(M.GET_ALL_NODES)}
    assert set(nodes) == {b"A" * 16, b"B" * 16}
    assert nodes[b"B" * 16]["alive"] and nodes[b"B" * 16]["raylet_endpoint"] == "tcp://127.0.0.1:9"
    assert client.call(M.GET_CLUSTER_RESOURCES) == ({"CPU": 6}, {"CPU": 3})


def test_silent_node_is_marked_dead(start_gcs, client_for, sockets):
    gcs = start_gcs(node_timeout_s=1)
    client = client_for(gcs)
    client.call(M.REGISTER_NODE, node_dict(b"A" * 16))
    sub = subscribe(gcs, sockets, client, b"A" * 16, msg.NODE_TOPIC)
    started_silence = time.monotonic()
    changed = receive(sub, accept=lambda m: isinstance(m, msg.NodeChanged))
    assert changed.node["state"] == "DEAD" and not changed.node["alive"]
    assert time.monotonic() - started_silence > 0.5
    assert client.call(M.GET_ALL_NODES)[0]["state"] == "DEAD"
    assert client.call(M.GET_CLUSTER_RESOURCES) == ({}, {})


# ------------------------------------------------------------ robustness ---
def test_malformed_and_wrong_requests_get_dropped_or_answered(start_gcs, client_for, sockets):
    gcs = start_gcs()
    raw = sockets(transport.dealer())
    raw.connect(gcs.gcs_address)
    raw.send(b"garbage")
    raw.send(bytes((msg.MAGIC, msg.MsgType.GCS_REQUEST)) + b"not a pickle")
    raw.send_multipart([b"two", b"frames"])
    raw.send(msg.encode(msg.PushTask(("not", "for", "the", "gcs"))))
    # Request id readable but args not a tuple, wrong arity, unknown method:
    raw.send(bytes((msg.MAGIC, msg.MsgType.GCS_REQUEST)) + pickle.dumps((7, int(M.KV_GET), "ns")))
    raw.send(msg.encode(msg.GcsRequest(8, int(M.KV_GET), ("ns",))))
    raw.send(msg.encode(msg.GcsRequest(9, 999, ())))
    raw.send(msg.encode(msg.GcsRequest(10, int(M.KV_PUT), ("ns", "str key", b"v", True))))
    replies = {}
    for _ in range(4):
        reply = receive(raw)
        replies[reply.request_id] = reply
    assert sorted(replies) == [7, 8, 9, 10]
    for reply in replies.values():
        assert not reply.ok and reply.payload[0] == GcsErrorCode.BAD_REQUEST
    assert "KV_GET" in replies[8].payload[1] and "key" in replies[8].payload[1]
    assert "999" in replies[9].payload[1]
    assert "bytes" in replies[10].payload[1]
    client = client_for(gcs)
    assert client.call(M.KV_PUT, "ns", b"k", b"v", True) is True
    with pytest.raises(GcsError) as err:
        client.call(M.KV_KEYS, "ns")
    assert err.value.code == GcsErrorCode.BAD_REQUEST
    assert gcs.proc.poll() is None
    assert "malformed" in gcs.log()


def test_exits_when_watched_pid_is_gone(start_gcs):
    watched = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        gcs = start_gcs(watch_pid=watched.pid)
    finally:
        watched.kill()
        watched.wait(timeout=5)
    assert gcs.proc.wait(timeout=5) == 0


def test_client_times_out_naming_the_method(sockets):
    silent, endpoint = fake_endpoint(sockets)
    with GcsClient(endpoint, timeout_s=0.2) as client:
        with pytest.raises(TimeoutError, match="KV_GET"):
            client.call(M.KV_GET, "ns", b"k")


# ---------------------------------------------------------------- actors ---
def actor_spec(actor_id, **overrides):
    spec = dict(actor_id=actor_id, job_id=b"\x01\x00\x00\x00", name=None, namespace="ns",
                detached=False, get_if_exists=False, resources={"CPU": 1},
                creation_task=("spec", actor_id), class_name="Counter", max_restarts=0)
    spec.update(overrides)
    return spec


def test_named_actor_conflict_and_get_if_exists(start_gcs, client_for):
    client = client_for(start_gcs())
    assert client.call(M.CREATE_ACTOR, actor_spec(b"a1", name="svc")) == {
        "actor_id": b"a1", "existing": False}
    with pytest.raises(GcsError) as err:
        client.call(M.CREATE_ACTOR, actor_spec(b"a2", name="svc"))
    assert err.value.code == GcsErrorCode.ACTOR_NAME_TAKEN
    assert err.value.message == "Actor with name 'svc' already exists in the namespace ns"
    assert client.call(M.CREATE_ACTOR, actor_spec(b"a3", name="svc", get_if_exists=True)) == {
        "actor_id": b"a1", "existing": True}
    info = client.call(M.GET_NAMED_ACTOR, "svc", "ns")
    assert info["actor_id"] == b"a1" and info["state"] == "PENDING_CREATION"
    assert client.call(M.LIST_NAMED_ACTORS, False, "ns") == [{"name": "svc", "namespace": "ns"}]
    with pytest.raises(GcsError) as err:
        client.call(M.GET_NAMED_ACTOR, "svc", "elsewhere")
    assert err.value.code == GcsErrorCode.NAMED_ACTOR_NOT_FOUND
    assert err.value.message == "Failed to look up actor with name 'svc' in namespace 'elsewhere'"
    with pytest.raises(GcsError) as err:
        client.call(M.GET_ACTOR_INFO, b"missing", False)
    assert err.value.code == GcsErrorCode.UNKNOWN_ACTOR


def grant_lease(raylet, worker_endpoint, worker_id, node_id):
    """Play the raylet: take the GCS's lease request and grant it."""
    identity, request = receive(raylet, accept=lambda m: isinstance(m[1], msg.RequestWorkerLease))
    raylet.send_multipart([identity, msg.encode(msg.LeaseGranted(
        request.request_id, 1, worker_id, worker_endpoint, node_id))])
    return request


def test_actor_creation_kill_through_raylet_and_worker(start_gcs, client_for, sockets):
    gcs = start_gcs()
    client = client_for(gcs)
    raylet, raylet_endpoint = fake_endpoint(sockets)
    worker, worker_endpoint = fake_endpoint(sockets)
    client.call(M.REGISTER_NODE, node_dict(b"A" * 16, raylet_endpoint))
    sub = subscribe(gcs, sockets, client, b"A" * 16, msg.actor_topic(b"a1"))
    client.call(M.CREATE_ACTOR, actor_spec(b"a1"))
    request = grant_lease(raylet, worker_endpoint, b"W" * 16, b"A" * 16)
    assert (request.actor_id, request.resources) == (b"a1", {"CPU": 1})
    identity, push = receive(worker)
    assert push == msg.PushTask(("spec", b"a1"))
    worker.send_multipart([identity, msg.encode(msg.TaskReply(
        b"t", msg.TaskStatus.OK, [(msg.ReturnKind.INLINE, b"None")], b"W" * 16))])
    info = client.call(M.WAIT_ACTOR_READY, b"a1")
    assert (info["state"], info["endpoint"], info["worker_id"]) == ("ALIVE", worker_endpoint, b"W" * 16)
    changed = receive(sub, accept=lambda m: isinstance(m, msg.ActorChanged) and m.state == "ALIVE")
    assert changed.endpoint == worker_endpoint
    client.call(M.KILL_ACTOR, b"a1", True)
    _, kill = receive(raylet, accept=lambda m: isinstance(m[1], msg.KillWorker))
    assert kill == msg.KillWorker(b"W" * 16, True, am.KILLED_MESSAGE)
    info = client.call(M.GET_ACTOR_INFO, b"a1", False)
    assert info["state"] == "DEAD" and info["death_message"] == am.KILLED_MESSAGE


def test_wait_alive_released_when_node_unregistered(start_gcs, client_for, sockets):
    gcs = start_gcs()
    client = client_for(gcs)
    raylet, raylet_endpoint = fake_endpoint(sockets)
    worker, worker_endpoint = fake_endpoint(sockets)
    client.call(M.REGISTER_NODE, node_dict(b"A" * 16, raylet_endpoint))
    client.call(M.CREATE_ACTOR, actor_spec(b"a1", max_restarts=0))
    grant_lease(raylet, worker_endpoint, b"W" * 16, b"A" * 16)
    receive(worker)                      # the creation task arrives and is never answered
    waiter = sockets(transport.dealer())
    waiter.connect(gcs.gcs_address)
    waiter.send(msg.encode(msg.GcsRequest(1, int(M.GET_ACTOR_INFO), (b"a1", True))))
    assert not waiter.poll(300), "the reply should wait for the actor to settle"
    client.call(M.UNREGISTER_NODE, b"A" * 16)
    reply = receive(waiter)
    assert reply.ok and reply.payload["state"] == "DEAD"
    assert "node" in reply.payload["death_message"]
    assert client.call(M.GET_ALL_NODES)[0]["state"] == "DEAD"
