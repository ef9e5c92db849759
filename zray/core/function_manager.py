"""Exports functions/classes once per job to the GCS KV and caches imports.

Key: blake2b of the cloudpickled definition, so identical definitions share
one entry and a worker fetches each definition at most once.

Definitions importable in the driver are pickled by reference (module name),
so the value stored also carries the driver's code paths, as Ray's job config
does: the directory of the driver script (when it is on ``sys.path``) and the
current directory.  A worker puts them on its ``sys.path`` before loading.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import sys
import threading

import cloudpickle

from .. import serialization
from ..sockets.messages import GcsMethod

KV_NAMESPACE = "fn"
# Ray's limits on a pickled definition: warn past 25 MiB, refuse past 95 MiB
# (such a definition almost always captures a big object by accident).
FUNCTION_SIZE_WARN_THRESHOLD = 25 * 1024 * 1024
FUNCTION_SIZE_ERROR_THRESHOLD = 95 * 1024 * 1024


class FunctionManager:
    def __init__(self, core_worker):
        self._cw = core_worker
        self._exported: dict = {}     # id(obj) -> (obj, function_id)
        self._loaded: dict = {}       # function_id -> obj
        self._lock = threading.Lock()
        # Workers pass on the paths they were given (nested remote definitions).
        self._code_paths = driver_code_paths() if core_worker.is_driver else []

    def export(self, obj) -> bytes:
        cached = self._exported.get(id(obj))
        if cached is not None and cached[0] is obj:
            return cached[1]
        data, captured = _dumps_capturing_refs(obj)
        _check_size(obj, len(data))
        function_id = hashlib.blake2b(data, digest_size=16).digest()
        # Refs captured in a definition stay pinned for the job, as in Ray.
        self._cw.pin_captured_refs(captured)
        value = pickle.dumps((self._code_paths, data), 5)
        self._cw.gcs_call(GcsMethod.KV_PUT, KV_NAMESPACE, function_id, value, False)
        with self._lock:
            self._exported[id(obj)] = (obj, function_id)
            self._loaded[function_id] = obj
        return function_id

    def loaded(self, function_id: bytes):
        """The definition if this process has loaded it already, else None."""
        return self._loaded.get(function_id)

    def load(self, function_id: bytes):
        obj = self._loaded.get(function_id)
        if obj is not None:
            return obj
        value = self._cw.gcs_call(GcsMethod.KV_GET, KV_NAMESPACE, function_id)
        if value is None:
            raise RuntimeError(f"function {function_id.hex()} was never exported to the GCS")
        code_paths, data = pickle.loads(value)
        with self._lock:
            for path in code_paths:
                if path not in sys.path:
                    sys.path.insert(0, path)
                if path not in self._code_paths:
                    self._code_paths.append(path)
        obj = cloudpickle.loads(data)
        with self._lock:
            self._loaded[function_id] = obj
        return obj


def driver_code_paths() -> list:
    """Ray's rule: the driver script's directory if it is on sys.path, and the cwd."""
    paths = []
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c", "-m") else ""
    if argv0:
        script_dir = os.path.dirname(os.path.realpath(argv0))
        if script_dir in sys.path:
            paths.append(script_dir)
    try:
        cwd = os.path.abspath(os.curdir)
    except OSError:
        cwd = None
    if cwd and cwd not in paths:
        paths.append(cwd)
    return paths


def _dumps_capturing_refs(obj):
    local = serialization._local
    previous = getattr(local, "refs", None)
    refs: list = []
    local.refs = refs
    try:
        return serialization.dumps_function(obj), refs
    finally:
        local.refs = previous


def _check_size(obj, size: int) -> None:
    if size <= FUNCTION_SIZE_WARN_THRESHOLD:
        return
    if isinstance(obj, type):     # Ray's wording: "The actor Counter", "The remote function m.f"
        kind, name = "actor", obj.__name__
    else:
        kind = "remote function"
        name = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__name__', repr(obj))}"
    advice = ("Check that its definition is not implicitly capturing a large array or other "
              "object in scope. Tip: use zray.put() to put large objects in the object store.")
    mib = size / (1024 * 1024)
    if size > FUNCTION_SIZE_ERROR_THRESHOLD:
        raise ValueError(f"The {kind} {name} is too large ({mib:.0f} MiB > "
                         f"FUNCTION_SIZE_ERROR_THRESHOLD=95 MiB). {advice}")
    import warnings
    warnings.warn(f"The {kind} {name} is very large ({mib:.0f} MiB). {advice}", UserWarning,
                  stacklevel=4)
