"""Exceptions raised by the shared-memory object store building blocks (zray.store)."""


class StoreError(Exception):
    """Base class for every error raised by zray.store."""


class ObjectExistsError(StoreError):
    """An object with this id is already in the store (created, sealed or pending delete)."""


class UnknownObjectError(StoreError, KeyError):
    """The object id is not in the store (or the operation needs a reader pin it does not have)."""

    def __str__(self) -> str:
        # KeyError's __str__ repr()s the message; keep it readable.
        return str(self.args[0]) if self.args else ""


class ObjectStateError(StoreError):
    """The operation is not valid in the object's current state (e.g. sealing twice)."""


class CorruptObjectError(StoreError, ValueError):
    """The bytes do not form a valid encoded object (bad magic, version, counts or offsets)."""
