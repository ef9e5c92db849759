"""Ray's small ``ray.util`` lookups: named actors and this node's address."""
from __future__ import annotations

from ..core import process_state
from ..sockets.messages import GcsMethod


def list_named_actors(all_namespaces: bool = False) -> list:
    """Names of the live named actors in the current namespace, or, with
    ``all_namespaces=True``, ``{"name": ..., "namespace": ...}`` for every one."""
    from ..api import _auto_init
    cw = _auto_init()
    entries = cw.gcs_call(GcsMethod.LIST_NAMED_ACTORS, bool(all_namespaces), cw.current_namespace())
    if all_namespaces:
        return [{"name": e["name"], "namespace": e["namespace"]} for e in entries]
    return [e["name"] for e in entries]


def get_node_ip_address() -> str:
    """The IP address of the node this process runs on."""
    worker = process_state.worker
    if worker is not None and getattr(worker, "node_ip", None):
        return worker.node_ip
    from ..exceptions import _node_ip
    return _node_ip()
