"""Messages between a driver or worker and its raylet, and the GCS's placement-group
commands to raylets.

Each is a NamedTuple of plain fields; zray.sockets.messages gives it its tag
and encodes / decodes it (import them from there: ``messages as m``).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional  # noqa: F401  (field annotations)


class RegisterClient(NamedTuple):
    worker_id: bytes
    is_driver: bool
    pid: int
    endpoint: str
    job_id: bytes


class RegisterClientReply(NamedTuple):
    node_id: bytes
    node_ip: str
    arena_path: str
    arena_capacity: int
    gcs_address: str
    gcs_pub_address: str
    session_dir: str


class RequestWorkerLease(NamedTuple):
    request_id: int
    resources: dict
    actor_id: Optional[bytes]   # set when the lease hosts an actor for life
    job_id: bytes
    env: tuple = ()             # runtime_env env_vars: (name, value) pairs the worker needs


class LeaseGranted(NamedTuple):
    request_id: int
    lease_id: int
    worker_id: bytes
    worker_endpoint: str
    node_id: bytes
    gpu_ids: tuple = ()       # GPU device indices the lease holds (CUDA_VISIBLE_DEVICES)


class LeaseFailed(NamedTuple):
    request_id: int
    error_code: int
    message: str


class ReturnWorker(NamedTuple):
    lease_id: int
    disconnect_worker: bool


class CancelLeaseRequest(NamedTuple):
    request_id: int


class ReclaimIdleLeases(NamedTuple):
    pass


class LeasedWorkerDied(NamedTuple):
    lease_id: int
    worker_id: bytes
    message: str
    alive: bool = False   # it retired (RetireWorker): it still serves the objects it owns


class NotifyBlocked(NamedTuple):
    pass


class TriggerGlobalGC(NamedTuple):
    pass          # a process asks for gc.collect() in every process of the node


class LocalGC(NamedTuple):
    pass          # the raylet tells a process to run gc.collect()


class RetireWorker(NamedTuple):
    pass          # a worker past max_calls: end its lease; it leaves once it owns nothing in use


class NotifyUnblocked(NamedTuple):
    pass


class CreateObject(NamedTuple):
    request_id: int
    object_id: bytes
    size: int


class CreateObjectReply(NamedTuple):
    request_id: int
    offset: int          # -1 on failure
    error_code: int      # CREATE_* below
    message: str
    size: int = 0        # CREATE_EXISTS: the size of the object already there


# CreateObjectReply.error_code values.
CREATE_OK = 0
CREATE_FAILED = 1
CREATE_EXISTS = 2        # sealed already (a retried task re-creating a return): nothing to write
CREATE_NEVER_FITS = 8


class SealObject(NamedTuple):
    object_id: bytes


class GetObjectLocal(NamedTuple):
    request_id: int
    object_id: bytes


class GetObjectLocalReply(NamedTuple):
    request_id: int
    object_id: bytes
    offset: int          # -1: not in this node's store; -2: spilled, no room to restore; -3: restore failed
    size: int


class ReleaseObject(NamedTuple):
    object_id: bytes


class FreeObjects(NamedTuple):
    object_ids: list


class KillWorker(NamedTuple):
    worker_id: bytes
    force: bool
    message: str


class PrepareBundles(NamedTuple):
    """GCS -> raylet, phase 1: reserve these bundles' resources (all or none)."""
    pg_id: bytes
    attempt: int
    bundles: tuple            # ((index, {resource: amount}), ...)


class BundlesPrepared(NamedTuple):
    pg_id: bytes
    attempt: int
    ok: bool
    message: str              # why not, when refused


class CommitBundles(NamedTuple):
    """GCS -> raylet, phase 2: turn the reservations into the group's resources."""
    pg_id: bytes
    attempt: int
    indices: tuple


class BundlesCommitted(NamedTuple):
    pg_id: bytes
    attempt: int
    available: dict           # the node's resources with the bundles in (a report that
    total: dict               # lands before anyone can see the group created)


class ReturnBundles(NamedTuple):
    """GCS -> raylet: cancel a prepare or release committed bundles (their workers end)."""
    pg_id: bytes
    indices: tuple


class ReleaseUnusedBundles(NamedTuple):
    """GCS -> raylet, once after a GCS restart: return every bundle not in ``keep``
    ((pg_id, index), ...): reservations of an interrupted commit or removal."""
    keep: tuple


class GetNodeStats(NamedTuple):
    request_id: int


class NodeStatsReply(NamedTuple):
    request_id: int
    stats: dict


class DisconnectClient(NamedTuple):
    worker_id: bytes


class LeaseInfeasible(NamedTuple):
    """The request stays queued, but no node could ever fit it (warn once)."""
    request_id: int
    message: str


# A worker leaving on purpose (exit_actor, __ray_terminate__, a graceful kill,
# retiring) exits with this code; any other - 0 from a user's sys.exit(0) or
# os._exit(0) included - or a signal is a crash, and the actor restarts (Ray's).
INTENDED_EXIT_CODE = 75
