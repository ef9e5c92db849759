"""TaskSpec: what an owner sends a worker to run one task.

A plain NamedTuple so it pickles as a tuple.  Arguments travel as one
pickled blob of ``(args, kwargs)`` in which every *top-level* ObjectRef has
been replaced by an ``ArgSlot(i)``; ``resolved`` holds, per slot, what the
owner resolved it to before dispatch:

    (ReturnKind.INLINE, pickled value)
    (ReturnKind.IN_STORE, object_id)      the worker maps it from its node store
    (ReturnKind.ERROR, pickled exception) the dependency failed

Refs nested inside containers stay refs (the callee borrows them).
"""
from __future__ import annotations

import os
from typing import NamedTuple, Optional

NORMAL_TASK = 0
ACTOR_CREATION_TASK = 1
ACTOR_TASK = 2


class ArgSlot:
    """Placeholder for a top-level ObjectRef argument."""
    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index

    def __reduce__(self):
        return ArgSlot, (self.index,)


class TaskSpec(NamedTuple):
    task_id: bytes
    job_id: bytes
    kind: int
    function_id: bytes           # GCS KV key of the pickled function / class
    function_name: str
    args_blob: bytes
    resolved: Optional[list]     # one entry per ArgSlot, or None
    num_returns: int
    owner_id: bytes              # owner worker id
    owner_endpoint: str
    actor_id: Optional[bytes]
    method_name: Optional[str]
    seq_no: int
    options: Optional[dict]      # actor creation: max_concurrency, is_async, ...
    parent_task_id: bytes


def return_object_ids(task_id: bytes, num_returns: int):
    from ..ids import object_id_for_return
    return [object_id_for_return(task_id, i) for i in range(num_returns)]


# The running-task marker: a worker writes the id of the normal task it starts
# into a small shared file, so that when the worker dies its owner (same host)
# knows which of the tasks pipelined to it ran and which never started.
def running_marker_path(session_dir: str, worker_id: bytes) -> str:
    return os.path.join(session_dir, "sockets", "run-" + worker_id.hex()[:16])


def read_running_marker(session_dir: str, worker_id: bytes) -> Optional[bytes]:
    """The last task id the worker started (b"" if none), or None if unknown."""
    try:
        with open(running_marker_path(session_dir, worker_id), "rb") as f:
            data = f.read(16)
    except OSError:
        return None
    return data if len(data) == 16 else None
