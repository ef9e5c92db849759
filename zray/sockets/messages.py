"""Every message zray sends between processes, defined once.

Frame layout (one frame per control message; LIMITS.md: multipart costs 2-3x):

    byte 0      MAGIC (0xA7) - rejects stray traffic before anything is parsed
    byte 1      MsgType tag  - must name a message defined here
    bytes 2..   pickle (protocol 5) of a plain tuple with exactly the fields of
                that message, in order

``decode`` checks magic, tag and length before unpickling, then checks that
the body is a tuple with the message's arity; anything else raises
``MalformedMessage``, which every receive loop logs and drops.  Frames are
only exchanged over loopback / ipc in this release; cluster authentication
(an HMAC over the frame, checked before unpickling) is the next layer.

GCS broadcasts are two frames: a topic (for SUB prefix filtering) then the
message frame.

Messages are NamedTuples (cheap to build on the hot path, immutable, with
named fields), defined by who talks in ``raylet_messages``, ``worker_messages``
and ``gcs_messages`` and imported here, where each gets its tag (the class
attribute TAG); code uses them as ``messages.X``.
"""
from __future__ import annotations

import enum
import pickle

MAGIC = 0xA7
MAX_FRAME_BYTES = 1 << 31


class MalformedMessage(ValueError):
    """A frame that is not a well-formed zray message."""


class MsgType(enum.IntEnum):
    # client (driver/worker) <-> raylet
    REGISTER_CLIENT = 10
    REGISTER_CLIENT_REPLY = 11
    REQUEST_WORKER_LEASE = 12
    LEASE_GRANTED = 13
    LEASE_FAILED = 14
    RETURN_WORKER = 15
    CANCEL_LEASE_REQUEST = 16
    RECLAIM_IDLE_LEASES = 17
    LEASED_WORKER_DIED = 18
    NOTIFY_BLOCKED = 19
    NOTIFY_UNBLOCKED = 20
    CREATE_OBJECT = 21
    CREATE_OBJECT_REPLY = 22
    SEAL_OBJECT = 23
    GET_OBJECT_LOCAL = 24
    GET_OBJECT_LOCAL_REPLY = 25
    RELEASE_OBJECT = 26
    FREE_OBJECTS = 27
    KILL_WORKER = 28
    GET_NODE_STATS = 29
    NODE_STATS_REPLY = 30
    DISCONNECT_CLIENT = 31
    LEASE_INFEASIBLE = 32
    # GCS <-> raylet: placement-group bundles (two-phase commit)
    PREPARE_BUNDLES = 33
    BUNDLES_PREPARED = 34
    COMMIT_BUNDLES = 35
    BUNDLES_COMMITTED = 36
    RETURN_BUNDLES = 37
    RELEASE_UNUSED_BUNDLES = 38
    # owner <-> worker (direct)
    PUSH_TASK = 40
    TASK_REPLY = 41
    CANCEL_TASK = 42
    GET_OBJECT_STATUS = 43
    OBJECT_STATUS_REPLY = 44
    REMOVE_BORROWER = 45
    ADD_BORROWER = 46
    BORROWER_ADDED = 47
    GET_REFERENCE_SUMMARY = 48
    REFERENCE_SUMMARY_REPLY = 49
    GENERATOR_ITEM = 50
    GENERATOR_CONSUMED = 51
    # client <-> raylet: Python garbage collection (zray/node/gc_trigger.py)
    TRIGGER_GLOBAL_GC = 55
    LOCAL_GC = 56
    RETIRE_WORKER = 57
    # anyone <-> GCS
    GCS_REQUEST = 60
    GCS_REPLY = 61
    REPORT_RESOURCES = 62
    WORKER_DIED = 63
    # GCS broadcasts
    NODE_CHANGED = 80
    ACTOR_CHANGED = 81
    RESOURCE_VIEW = 82


class GcsMethod(enum.IntEnum):
    """Operations carried by GcsRequest (one request/reply message pair)."""
    REGISTER_NODE = 1
    GET_ALL_NODES = 2
    KV_PUT = 3
    KV_GET = 4
    KV_DEL = 5
    KV_KEYS = 6
    REGISTER_JOB = 7
    CREATE_ACTOR = 8
    GET_ACTOR_INFO = 9
    GET_NAMED_ACTOR = 10
    KILL_ACTOR = 11
    LIST_NAMED_ACTORS = 12
    ACTOR_OUT_OF_SCOPE = 13
    JOB_FINISHED = 14
    GET_CLUSTER_RESOURCES = 15
    UNREGISTER_NODE = 16
    WAIT_ACTOR_READY = 17
    GET_WORKER_DEATH = 18        # death message of a worker/driver, or None if not known dead
    CREATE_PLACEMENT_GROUP = 19
    REMOVE_PLACEMENT_GROUP = 20
    GET_PLACEMENT_GROUP = 21     # by id, or by (name, namespace); None if unknown
    WAIT_PLACEMENT_GROUP_READY = 22
    GET_ALL_PLACEMENT_GROUPS = 23
    GET_ALL_ACTORS = 24          # every actor's info (no creation task)
    GET_ALL_JOBS = 25
    ADD_TASK_EVENTS = 26         # a batch of (task_id, state, time, info) from one process
    GET_TASK_EVENTS = 27         # every task the GCS keeps (optionally of one job)


class TaskStatus(enum.IntEnum):
    OK = 0
    REQUEUE = 1          # worker gave back a task it had not started
    SYSTEM_ERROR = 2     # the worker could not run it (returns hold the error)
    EXITING = 3          # an actor's __init__ called exit_actor(): the worker leaves by itself


class ReturnKind(enum.IntEnum):
    INLINE = 0           # data = pickled value (bytes)
    IN_STORE = 1         # data = (node_id, size): sealed in that node's shm store
    ERROR = 2            # data = pickled exception to raise on get
    FREED = 3            # owner no longer has it


# The messages themselves, by who talks (tags: MsgType above).
from .raylet_messages import (  # noqa: E402,F401  (defined there, tagged here)
    RegisterClient, RegisterClientReply, RequestWorkerLease, LeaseGranted, LeaseFailed,
    ReturnWorker, CancelLeaseRequest, ReclaimIdleLeases, LeasedWorkerDied, NotifyBlocked,
    TriggerGlobalGC, LocalGC, RetireWorker, NotifyUnblocked, CreateObject, CreateObjectReply,
    SealObject, GetObjectLocal, GetObjectLocalReply, ReleaseObject, FreeObjects,
    KillWorker, PrepareBundles, BundlesPrepared, CommitBundles, BundlesCommitted,
    ReturnBundles, ReleaseUnusedBundles, GetNodeStats, NodeStatsReply, DisconnectClient,
    LeaseInfeasible, CREATE_OK, CREATE_FAILED, CREATE_EXISTS, CREATE_NEVER_FITS,
    INTENDED_EXIT_CODE)
from .worker_messages import (  # noqa: E402,F401  (defined there, tagged here)
    PushTask, TaskReply, GeneratorConsumed, GeneratorItem, RemoveBorrower,
    AddBorrower, BorrowerAdded, GetReferenceSummary, ReferenceSummaryReply, CancelTask,
    GetObjectStatus, ObjectStatusReply)
from .gcs_messages import (  # noqa: E402,F401  (defined there, tagged here)
    GcsRequest, GcsReply, ReportResources, WorkerDied, NodeChanged,
    ActorChanged, ResourceView)

_CLASSES = {
    MsgType.REGISTER_CLIENT: RegisterClient,
    MsgType.REGISTER_CLIENT_REPLY: RegisterClientReply,
    MsgType.REQUEST_WORKER_LEASE: RequestWorkerLease,
    MsgType.LEASE_GRANTED: LeaseGranted,
    MsgType.LEASE_FAILED: LeaseFailed,
    MsgType.RETURN_WORKER: ReturnWorker,
    MsgType.CANCEL_LEASE_REQUEST: CancelLeaseRequest,
    MsgType.RECLAIM_IDLE_LEASES: ReclaimIdleLeases,
    MsgType.LEASED_WORKER_DIED: LeasedWorkerDied,
    MsgType.NOTIFY_BLOCKED: NotifyBlocked,
    MsgType.NOTIFY_UNBLOCKED: NotifyUnblocked,
    MsgType.CREATE_OBJECT: CreateObject,
    MsgType.CREATE_OBJECT_REPLY: CreateObjectReply,
    MsgType.SEAL_OBJECT: SealObject,
    MsgType.GET_OBJECT_LOCAL: GetObjectLocal,
    MsgType.GET_OBJECT_LOCAL_REPLY: GetObjectLocalReply,
    MsgType.RELEASE_OBJECT: ReleaseObject,
    MsgType.FREE_OBJECTS: FreeObjects,
    MsgType.KILL_WORKER: KillWorker,
    MsgType.GET_NODE_STATS: GetNodeStats,
    MsgType.NODE_STATS_REPLY: NodeStatsReply,
    MsgType.DISCONNECT_CLIENT: DisconnectClient,
    MsgType.LEASE_INFEASIBLE: LeaseInfeasible,
    MsgType.PREPARE_BUNDLES: PrepareBundles,
    MsgType.BUNDLES_PREPARED: BundlesPrepared,
    MsgType.COMMIT_BUNDLES: CommitBundles,
    MsgType.BUNDLES_COMMITTED: BundlesCommitted,
    MsgType.RETURN_BUNDLES: ReturnBundles,
    MsgType.RELEASE_UNUSED_BUNDLES: ReleaseUnusedBundles,
    MsgType.PUSH_TASK: PushTask,
    MsgType.TASK_REPLY: TaskReply,
    MsgType.CANCEL_TASK: CancelTask,
    MsgType.GET_OBJECT_STATUS: GetObjectStatus,
    MsgType.OBJECT_STATUS_REPLY: ObjectStatusReply,
    MsgType.REMOVE_BORROWER: RemoveBorrower,
    MsgType.GENERATOR_ITEM: GeneratorItem,
    MsgType.GENERATOR_CONSUMED: GeneratorConsumed,
    MsgType.TRIGGER_GLOBAL_GC: TriggerGlobalGC,
    MsgType.LOCAL_GC: LocalGC,
    MsgType.RETIRE_WORKER: RetireWorker,
    MsgType.ADD_BORROWER: AddBorrower,
    MsgType.BORROWER_ADDED: BorrowerAdded,
    MsgType.GET_REFERENCE_SUMMARY: GetReferenceSummary,
    MsgType.REFERENCE_SUMMARY_REPLY: ReferenceSummaryReply,
    MsgType.GCS_REQUEST: GcsRequest,
    MsgType.GCS_REPLY: GcsReply,
    MsgType.REPORT_RESOURCES: ReportResources,
    MsgType.WORKER_DIED: WorkerDied,
    MsgType.NODE_CHANGED: NodeChanged,
    MsgType.ACTOR_CHANGED: ActorChanged,
    MsgType.RESOURCE_VIEW: ResourceView,
}

_HEADERS = {}
_BY_TAG = {}
for _tag, _cls in _CLASSES.items():
    _cls.TAG = _tag
    _HEADERS[_cls] = bytes((MAGIC, int(_tag)))
    _BY_TAG[int(_tag)] = _cls
del _tag, _cls

_dumps = pickle.dumps
_loads = pickle.loads
_tuple_new = tuple.__new__


def encode(msg) -> bytes:
    """One frame for ``msg``."""
    return _HEADERS[type(msg)] + _dumps(msg[:], 5)


def decode(frame) -> tuple:
    """The message in ``frame`` (bytes or zmq Frame); MalformedMessage if not one."""
    data = frame if isinstance(frame, bytes) else bytes(frame)
    if len(data) < 3 or data[0] != MAGIC:
        raise MalformedMessage(f"not a zray frame ({len(data)} bytes, starts {data[:4]!r})")
    cls = _BY_TAG.get(data[1])
    if cls is None:
        raise MalformedMessage(f"unknown message tag {data[1]}")
    try:
        fields = _loads(memoryview(data)[2:])
    except Exception as exc:  # truncated / corrupt pickle
        raise MalformedMessage(f"undecodable {cls.__name__} body: {exc!r}") from None
    if type(fields) is not tuple or len(fields) != len(cls._fields):
        raise MalformedMessage(
            f"{cls.__name__} needs {len(cls._fields)} fields, got {type(fields).__name__}"
            f" of length {len(fields) if isinstance(fields, tuple) else '?'}")
    return _tuple_new(cls, fields)


def encode_topic(topic: bytes, msg) -> list:
    return [topic, encode(msg)]


def actor_topic(actor_id: bytes) -> bytes:
    return b"A" + actor_id


def worker_topic(worker_id: bytes) -> bytes:
    return b"W" + worker_id


NODE_TOPIC = b"N"
RESOURCE_TOPIC = b"R"
