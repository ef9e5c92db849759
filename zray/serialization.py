"""Value serialization: pickle protocol 5, out-of-band buffers, ref capture.

* Fast path: the C pickler.  Values it cannot handle by reference (lambdas,
  closures, classes defined in ``__main__``) fall back to cloudpickle, which
  pickles them by value as Ray does.
* Small values become one ``bytes`` (in-band pickle) that travels inline.
* Large values keep their buffers out of band so the store can lay them out
  64-byte aligned and ``get`` can map them back zero-copy.
* ObjectRefs met while pickling are recorded in a thread-local context (the
  caller learns which refs a value contains: borrowing / pinning).
"""
from __future__ import annotations

import pickle
import threading

import cloudpickle

INLINE_THRESHOLD = 100 * 1024

_local = threading.local()
_dumps = pickle.dumps
_loads = pickle.loads
_MAIN_MARKER = b"__main__"


class SerializationError(TypeError):
    """A value could not be pickled; the message names it."""


def contained_refs_sink():
    """The list ObjectRef.__reduce__ appends to, or None outside serialize."""
    return getattr(_local, "refs", None)


def _pickle(value, buffers=None) -> bytes:
    callback = buffers.append if buffers is not None else None
    try:
        data = _dumps(value, 5, buffer_callback=callback)
        if _MAIN_MARKER not in data:
            return data
    except Exception:
        pass
    # Retry by value: forget what the first attempt collected.
    if buffers:
        buffers.clear()
    refs = getattr(_local, "refs", None)
    if refs:
        refs.clear()
    return cloudpickle.dumps(value, protocol=5, buffer_callback=callback)


def serialize(value, what: str = "value"):
    """Returns (inline_bytes or None, stream, buffers, contained_refs).

    ``inline_bytes`` is set when the value fits inline; otherwise ``stream``
    and ``buffers`` (PickleBuffers) describe it for the shared-memory store.
    """
    previous = getattr(_local, "refs", None)
    refs: list = []
    _local.refs = refs
    buffers: list = []
    try:
        try:
            stream = _pickle(value, buffers)
        except Exception as exc:
            raise SerializationError(
                f"Could not serialize {what} of type {type(value).__name__}: {exc}") from exc
        size = len(stream)
        if buffers:
            size += sum(memoryview(b).nbytes for b in buffers)
        if size <= INLINE_THRESHOLD:
            if buffers:
                buffers.clear()
                refs.clear()
                stream = _pickle(value)
            return stream, None, None, refs
        return None, stream, buffers, refs
    finally:
        _local.refs = previous


def serialize_inline(value, what: str = "value"):
    """In-band pickle (no size limit); returns (bytes, contained_refs)."""
    previous = getattr(_local, "refs", None)
    refs: list = []
    _local.refs = refs
    try:
        return _pickle(value), refs
    except Exception as exc:
        raise SerializationError(
            f"Could not serialize {what} of type {type(value).__name__}: {exc}") from exc
    finally:
        _local.refs = previous


# The arguments blob of a call without arguments, shared by caller and executor
# so neither pickles anything for it.
EMPTY_ARGS_BLOB = pickle.dumps(((), None), 5)


def deserialize(data, buffers=None):
    return _loads(data, buffers=buffers) if buffers is not None else _loads(data)


def dumps_function(obj) -> bytes:
    """Functions and classes always go through cloudpickle (by value if needed)."""
    try:
        return cloudpickle.dumps(obj, protocol=5)
    except Exception as exc:
        raise SerializationError(
            f"Could not serialize {getattr(obj, '__qualname__', obj)!r}: {exc}. "
            "Check that it does not capture unpicklable objects (locks, sockets, "
            "open files) in its closure or globals.") from exc
