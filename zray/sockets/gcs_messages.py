"""Messages to and from the GCS, and its broadcasts.

Each is a NamedTuple of plain fields; zray.sockets.messages gives it its tag
and encodes / decodes it (import them from there: ``messages as m``).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional  # noqa: F401  (field annotations)


class GcsRequest(NamedTuple):
    request_id: int
    method: int          # GcsMethod
    args: tuple


class GcsReply(NamedTuple):
    request_id: int
    ok: bool
    payload: Any         # result, or (error_code, message) when not ok


class ReportResources(NamedTuple):
    node_id: bytes
    available: dict
    total: dict


class WorkerDied(NamedTuple):
    node_id: bytes
    worker_id: bytes
    actor_id: Optional[bytes]
    message: str
    intended: bool = False    # the process exited on purpose (exit_actor, __ray_terminate__)


class NodeChanged(NamedTuple):
    node: dict


class ActorChanged(NamedTuple):
    actor_id: bytes
    state: str           # PENDING_CREATION | ALIVE | RESTARTING | DEAD
    endpoint: str
    node_id: bytes
    worker_id: bytes
    death_message: str


class ResourceView(NamedTuple):
    nodes: dict          # node_id -> {"available": {...}, "total": {...}}
