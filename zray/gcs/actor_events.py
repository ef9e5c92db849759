"""The vocabulary of the GCS actor state machine: events in, actions out.

Events are what ``ActorManager.handle(event, now)`` accepts; actions are what
it returns for the server to carry out, in order.  All are NamedTuples of
plain values; ``request_ref`` is opaque here (the server's (identity,
request_id)) and only travels back in ``Reply``.
"""
from __future__ import annotations

from typing import Any, NamedTuple


# ------------------------------------------------------------------ events ---
class CreateActorEvent(NamedTuple):
    request_ref: Any        # opaque to this module; handed back in Reply
    spec: dict


class GetActorInfoEvent(NamedTuple):
    request_ref: Any
    actor_id: bytes
    wait_alive: bool        # defer the reply while PENDING_CREATION/RESTARTING


class KillActorEvent(NamedTuple):
    request_ref: Any
    actor_id: bytes
    no_restart: bool


class ActorOutOfScopeEvent(NamedTuple):
    actor_id: bytes


class JobFinishedEvent(NamedTuple):
    job_id: bytes


class LeaseGrantedEvent(NamedTuple):
    request_id: int
    lease_id: int
    worker_id: bytes
    worker_endpoint: str
    node_id: bytes
    gpu_ids: tuple = ()


class LeaseFailedEvent(NamedTuple):
    request_id: int
    error_code: int
    message: str


class CreationTaskRepliedEvent(NamedTuple):
    actor_id: bytes
    worker_endpoint: str    # the channel the reply came on (stale ones are ignored)
    status: int             # TaskStatus
    returns: list           # [(ReturnKind, data)]


class WorkerDiedEvent(NamedTuple):
    worker_id: bytes
    message: str
    intended: bool = False


class NodeAddedEvent(NamedTuple):
    node_id: bytes
    total: dict
    available: dict


class NodeResourcesEvent(NamedTuple):
    node_id: bytes
    total: dict
    available: dict


class NodeDiedEvent(NamedTuple):
    node_id: bytes
    message: str


class TickEvent(NamedTuple):
    pass


class PlacementGroupRemovedEvent(NamedTuple):
    """Actors placed in this group die with it."""
    pg_id: bytes


# ----------------------------------------------------------------- actions ---
class RequestLease(NamedTuple):
    node_id: bytes
    request_id: int
    resources: dict
    actor_id: bytes
    job_id: bytes
    env: tuple = ()       # runtime_env env_vars of the actor's worker


class CancelLease(NamedTuple):
    node_id: bytes
    request_id: int


class ReturnLease(NamedTuple):
    """A grant that arrived for a request nobody waits for any more."""
    node_id: bytes
    lease_id: int


class PushCreationTask(NamedTuple):
    actor_id: bytes
    worker_endpoint: str
    spec: tuple


class CloseWorkerChannel(NamedTuple):
    """The creation task on this worker is settled or abandoned."""
    worker_endpoint: str


class KillWorker(NamedTuple):
    node_id: bytes
    worker_id: bytes
    message: str
    graceful: bool = False    # let the actor finish its calls and run __ray_shutdown__


class SaveActor(NamedTuple):
    record: dict            # persist only (no state change to announce)


class PublishActor(NamedTuple):
    record: dict            # persist, then broadcast ActorChanged


class Reply(NamedTuple):
    request_ref: Any
    ok: bool
    payload: Any


class Warn(NamedTuple):
    message: str
