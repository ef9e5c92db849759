"""Messages between core workers: an owner and the workers running its tasks, borrowers
and owners.

Each is a NamedTuple of plain fields; zray.sockets.messages gives it its tag
and encodes / decodes it (import them from there: ``messages as m``).
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional  # noqa: F401  (field annotations)


class PushTask(NamedTuple):
    spec: tuple          # zray.core.task_spec.TaskSpec as a plain tuple


class TaskReply(NamedTuple):
    task_id: bytes
    status: int          # TaskStatus
    returns: list        # [(ReturnKind, data)] one per return value
    worker_id: bytes
    borrowed: tuple = ()  # object ids of the caller's that the worker still holds
    # refs inside the returned values: (return index, object id, owner); the
    # worker already registered the caller as a borrower of the foreign ones
    contained: tuple = ()


class GeneratorConsumed(NamedTuple):
    """Caller -> worker, for a generator run with backpressure: the caller has
    taken ``count`` items, so the generator may run ahead of that again."""
    task_id: bytes
    count: int


class GeneratorItem(NamedTuple):
    """Worker -> caller, before the call's TaskReply: one value a streaming
    generator task yielded (item ``index``: object id return index 1 + index)."""
    task_id: bytes
    index: int
    kind: int            # ReturnKind of the item's value
    data: object         # as in TaskReply.returns
    worker_id: bytes
    borrowed: tuple = ()  # always empty; lets the caller reuse accept_reply_refs
    contained: tuple = ()  # refs inside the value: (0, object id, owner)


class RemoveBorrower(NamedTuple):
    """Borrower -> owner: this worker no longer holds the object."""
    object_id: bytes
    worker_id: bytes
    count: int = 1        # registrations made for this worker that end now


class AddBorrower(NamedTuple):
    """Anyone -> owner: count ``borrower_id`` as holding the object (a ref was
    handed to it by someone other than the owner); answered by BorrowerAdded."""
    request_id: int
    object_id: bytes
    borrower_id: bytes


class BorrowerAdded(NamedTuple):
    request_id: int
    ok: bool              # False: the owner no longer has the object


class GetReferenceSummary(NamedTuple):
    """`zray memory` -> any core worker: what its reference table holds."""
    request_id: int


class ReferenceSummaryReply(NamedTuple):
    request_id: int
    summary: dict         # see zray.core.memory_view.reference_summary


class CancelTask(NamedTuple):
    task_id: bytes
    force: bool
    recursive: bool


class GetObjectStatus(NamedTuple):
    request_id: int
    object_id: bytes


class ObjectStatusReply(NamedTuple):
    request_id: int
    object_id: bytes
    kind: int            # ReturnKind
    data: Any
