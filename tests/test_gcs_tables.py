"""Tests for zray.gcs.tables (the LMDB env) and zray.gcs.node_manager (pure)."""

from zray.gcs.node_manager import NodeManager
from zray.gcs.tables import ACTORS, JOBS, NODES, GcsTables


def test_records_kv_and_job_counter_survive_reopen(tmp_path):
    tables = GcsTables(str(tmp_path))
    tables.put(NODES, b"n1", {"state": "ALIVE"})
    tables.put(ACTORS, b"a1", {"state": "DEAD", "creation_task": (b"x", 1)})
    assert tables.kv_put("ns", b"k", b"v", False) is True
    assert [tables.next_job_id() for _ in range(2)] == [1, 2]
    tables.close()
    tables = GcsTables(str(tmp_path))
    assert tables.load(NODES) == {b"n1": {"state": "ALIVE"}}
    assert tables.get(ACTORS, b"a1")["creation_task"] == (b"x", 1)
    assert tables.get(JOBS, b"nope") is None
    assert tables.kv_get("ns", b"k") == b"v"
    assert tables.next_job_id() == 3
    tables.close()


def test_kv_namespaces_prefixes_and_prefix_delete(tmp_path):
    tables = GcsTables(str(tmp_path))
    for key in (b"fn:1", b"fn:2", b"cls:1"):
        tables.kv_put("a", key, b"x", True)
    tables.kv_put("ab", b"fn:3", b"x", True)    # a namespace that extends another one
    assert tables.kv_keys("a", b"fn:") == [b"fn:1", b"fn:2"]
    assert tables.kv_keys("ab", b"") == [b"fn:3"]
    assert tables.kv_del("a", b"fn:", by_prefix=True) == 2
    assert tables.kv_keys("a", b"") == [b"cls:1"]
    tables.close()


def test_map_grows_when_full(tmp_path):
    tables = GcsTables(str(tmp_path), map_size=256 * 1024)
    value = b"v" * 100_000
    for i in range(40):   # ~4 MB through a 256 KiB initial map
        tables.kv_put("ns", b"key%d" % i, value, True)
    assert tables.kv_get("ns", b"key39") == value
    assert len(tables.kv_keys("ns", b"key")) == 40
    tables.close()


def test_node_manager_heartbeats_and_resources():
    nodes = NodeManager(node_timeout_s=1.0)
    nodes.register({"node_id": b"A", "raylet_endpoint": "tcp://x:1",
                    "resources_total": {"CPU": 4}}, now=0.0)
    nodes.register({"node_id": b"B", "raylet_endpoint": "tcp://x:2",
                    "resources_total": {"CPU": 2, "GPU": 1}}, now=0.0)
    assert nodes.report(b"A", {"CPU": 1}, {"CPU": 4}, now=0.9)
    assert not nodes.report(b"stranger", {}, {}, now=0.9)
    assert nodes.cluster_resources() == ({"CPU": 6, "GPU": 1}, {"CPU": 3, "GPU": 1})
    assert nodes.expire(now=1.5) == [b"B"]
    assert nodes.mark_dead(b"B")["state"] == "DEAD"
    assert nodes.mark_dead(b"B") is None                       # only once
    assert not nodes.report(b"B", {"CPU": 2}, {"CPU": 2}, now=1.6)   # dead stays dead
    assert nodes.cluster_resources() == ({"CPU": 4}, {"CPU": 1})
    assert set(nodes.take_resource_view()) == {b"A"} and not nodes.dirty
