"""The GCS's node table and health check: pure bookkeeping, no sockets, no clock.

Owns one record per node ever registered::

    node_id, node_ip, raylet_endpoint, object_store_memory,
    state "ALIVE" | "DEAD", alive (bool), resources_total, resources_available

Liveness: every ReportResources from a raylet (~every 100 ms) is its
heartbeat; ``expire(now)`` marks a node DEAD once it has been silent for
``node_timeout_s``.  Reports from a DEAD or unknown node are ignored: a node
declared dead stays dead until it registers again (its actors have already
been restarted elsewhere).  The caller persists and publishes what these
methods return; ``dirty`` says whether the resource view changed since the
last ``take_resource_view()``.
"""
from __future__ import annotations

ALIVE = "ALIVE"
DEAD = "DEAD"

_REQUIRED_NODE_FIELDS = ("node_id", "raylet_endpoint", "resources_total")


class NodeManager:
    def __init__(self, node_timeout_s: float):
        self.node_timeout_s = node_timeout_s
        self._nodes: dict[bytes, dict] = {}
        self._last_seen: dict[bytes, float] = {}   # alive nodes only
        self.dirty = False                         # resource view changed

    # ------------------------------------------------------------ changes ---
    def restore(self, records: dict, now: float) -> list:
        """Reload persisted nodes; alive ones get a full timeout to report in."""
        for node_id, record in records.items():
            self._nodes[node_id] = record
            if record["state"] == ALIVE:
                self._last_seen[node_id] = now
        self.dirty = True
        return [r for r in records.values() if r["state"] == ALIVE]

    def register(self, node: dict, now: float) -> dict:
        """The node's new record (ALIVE).  ValueError names a missing field."""
        if not isinstance(node, dict):
            raise ValueError(f"REGISTER_NODE needs a node dict, got {type(node).__name__}")
        for field in _REQUIRED_NODE_FIELDS:
            if field not in node:
                raise ValueError(f"REGISTER_NODE node dict is missing {field!r}")
        if not isinstance(node["node_id"], bytes):
            raise ValueError("REGISTER_NODE node_id must be bytes")
        total = dict(node["resources_total"])
        record = {
            "node_id": node["node_id"],
            "node_ip": node.get("node_ip", ""),
            "raylet_endpoint": node["raylet_endpoint"],
            "object_store_memory": int(node.get("object_store_memory", 0)),
            "resources_total": total,
            "resources_available": dict(node.get("resources_available", total)),
            "state": ALIVE,
            "alive": True,
        }
        self._nodes[record["node_id"]] = record
        self._last_seen[record["node_id"]] = now
        self.dirty = True
        return record

    def mark_dead(self, node_id: bytes):
        """The DEAD record, or None if the node is unknown or already dead."""
        record = self._nodes.get(node_id)
        if record is None or record["state"] == DEAD:
            return None
        record.update(state=DEAD, alive=False, resources_available={})
        self._last_seen.pop(node_id, None)
        self.dirty = True
        return record

    def report(self, node_id: bytes, available: dict, total: dict, now: float) -> bool:
        """Heartbeat + resources.  False (and ignored) if the node is unknown or DEAD."""
        if node_id not in self._last_seen:
            return False
        self._last_seen[node_id] = now
        record = self._nodes[node_id]
        if record["resources_available"] != available or record["resources_total"] != total:
            record["resources_available"] = dict(available)
            record["resources_total"] = dict(total)
            self.dirty = True
        return True

    def expire(self, now: float) -> list:
        """Node ids silent for longer than the timeout (not yet marked dead)."""
        deadline = now - self.node_timeout_s
        return [nid for nid, seen in self._last_seen.items() if seen < deadline]

    # ------------------------------------------------------------ queries ---
    def get(self, node_id: bytes):
        return self._nodes.get(node_id)

    def is_alive(self, node_id: bytes) -> bool:
        return node_id in self._last_seen

    def alive_view(self) -> dict:
        """{node_id: (total, available)} of alive nodes, as last reported (not copies)."""
        return {nid: (self._nodes[nid]["resources_total"], self._nodes[nid]["resources_available"])
                for nid in self._last_seen}

    def all_nodes(self) -> list:
        return [dict(record) for record in self._nodes.values()]

    def cluster_resources(self) -> tuple:
        """(total, available), each summed over alive nodes."""
        total: dict = {}
        available: dict = {}
        for node_id in self._last_seen:
            record = self._nodes[node_id]
            for name, amount in record["resources_total"].items():
                total[name] = total.get(name, 0) + amount
            for name, amount in record["resources_available"].items():
                available[name] = available.get(name, 0) + amount
        return total, available

    def take_resource_view(self) -> dict:
        """{node_id: {"available", "total"}} of alive nodes; clears ``dirty``."""
        self.dirty = False
        return {nid: {"available": dict(self._nodes[nid]["resources_available"]),
                      "total": dict(self._nodes[nid]["resources_total"])}
                for nid in self._last_seen}
