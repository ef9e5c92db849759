"""Identifiers: jobs, tasks, objects, actors, nodes, workers, placement groups.

All ids are raw ``bytes`` on the hot path (hashable, cheap to pickle); the
wrapper classes exist for the public API (``.hex()``, ``.binary()``) and for
Ray-compatible ``get_runtime_context()`` values.

Layout (DESIGN.md section 2):
    JobID     4 bytes
    TaskID    12-byte hash(parent TaskID, child index) + JobID       = 16 bytes
    ObjectID  TaskID + 4-byte little-endian index                     = 20 bytes
              returns use 1..2**31-1, puts use 2**31 + put index; index 0 of
              an actor's creation task counts the actor's handles (no value)
    ActorID, NodeID, WorkerID, PlacementGroupID: 16 random bytes
"""
from __future__ import annotations

import hashlib
import os

JOB_ID_SIZE = 4
TASK_ID_SIZE = 16
OBJECT_ID_SIZE = 20
UNIQUE_ID_SIZE = 16
PUT_INDEX_BASE = 1 << 31

_blake2b = hashlib.blake2b


def random_unique_id() -> bytes:
    return os.urandom(UNIQUE_ID_SIZE)


def job_id_from_int(value: int) -> bytes:
    return value.to_bytes(JOB_ID_SIZE, "little")


def root_task_id(job_id: bytes) -> bytes:
    """The driver's root task: random, since a driver has no parent."""
    return os.urandom(TASK_ID_SIZE - JOB_ID_SIZE) + job_id


def child_task_id(parent_task_id: bytes, child_index: int) -> bytes:
    """Deterministic child id, so a re-executed parent re-creates the same ids."""
    digest = _blake2b(parent_task_id + child_index.to_bytes(8, "little"),
                      digest_size=TASK_ID_SIZE - JOB_ID_SIZE).digest()
    return digest + parent_task_id[-JOB_ID_SIZE:]


def object_id_for_return(task_id: bytes, index: int) -> bytes:
    return task_id + (index + 1).to_bytes(4, "little")


def object_id_for_put(task_id: bytes, put_index: int) -> bytes:
    return task_id + (PUT_INDEX_BASE + put_index).to_bytes(4, "little")


def actor_handle_object_id(creation_task_id: bytes) -> bytes:
    """The object whose references are an actor's handles (as Ray's actor
    handle refs): its owner, the actor's creator, counts every handle with
    the object borrowing protocol and ends the actor when none is left."""
    return creation_task_id + b"\0\0\0\0"


def is_actor_handle_object(object_id: bytes) -> bool:
    return object_id.endswith(b"\0\0\0\0") and len(object_id) == OBJECT_ID_SIZE


def task_id_of_object(object_id: bytes) -> bytes:
    return object_id[:TASK_ID_SIZE]


def job_id_of(id_bytes: bytes) -> bytes:
    """Job of a TaskID or ObjectID."""
    return id_bytes[TASK_ID_SIZE - JOB_ID_SIZE:TASK_ID_SIZE]


class BaseID:
    """Public wrapper with Ray's accessors."""

    __slots__ = ("_bytes",)
    size = UNIQUE_ID_SIZE

    def __init__(self, id_bytes: bytes):
        if not isinstance(id_bytes, bytes) or len(id_bytes) != self.size:
            raise ValueError(f"{type(self).__name__} needs {self.size} bytes, got {id_bytes!r}")
        self._bytes = id_bytes

    def binary(self) -> bytes:
        return self._bytes

    def hex(self) -> str:
        return self._bytes.hex()

    @classmethod
    def from_hex(cls, hex_id: str):
        return cls(bytes.fromhex(hex_id))

    @classmethod
    def nil(cls):
        return cls(b"\xff" * cls.size)

    def is_nil(self) -> bool:
        return self._bytes == b"\xff" * self.size

    def __eq__(self, other):
        return type(other) is type(self) and other._bytes == self._bytes

    def __hash__(self):
        return hash(self._bytes)

    def __repr__(self):
        return f"{type(self).__name__}({self.hex()})"

    def __reduce__(self):
        return type(self), (self._bytes,)


class JobID(BaseID):
    __slots__ = ()
    size = JOB_ID_SIZE


class TaskID(BaseID):
    __slots__ = ()
    size = TASK_ID_SIZE

    def job_id(self) -> "JobID":
        return JobID(job_id_of(self.binary()))


class ObjectID(BaseID):
    __slots__ = ()
    size = OBJECT_ID_SIZE


class ActorID(BaseID):
    __slots__ = ()


class NodeID(BaseID):
    __slots__ = ()


class WorkerID(BaseID):
    __slots__ = ()


class PlacementGroupID(BaseID):
    __slots__ = ()
