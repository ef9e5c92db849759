"""Exports functions/classes once per job to the GCS KV and caches imports.

Key: blake2b of the cloudpickled definition, so identical definitions share
one entry and a worker fetches each definition at most once.
"""
from __future__ import annotations

import hashlib
import threading

import cloudpickle

from .. import serialization
from ..sockets.messages import GcsMethod

KV_NAMESPACE = "fn"


class FunctionManager:
    def __init__(self, core_worker):
        self._cw = core_worker
        self._exported: dict = {}     # id(obj) -> (obj, function_id)
        self._loaded: dict = {}       # function_id -> obj
        self._lock = threading.Lock()

    def export(self, obj) -> bytes:
        cached = self._exported.get(id(obj))
        if cached is not None and cached[0] is obj:
            return cached[1]
        data, captured = _dumps_capturing_refs(obj)
        function_id = hashlib.blake2b(data, digest_size=16).digest()
        # Refs captured in a definition stay pinned for the job, as in Ray.
        self._cw.pin_captured_refs(captured)
        self._cw.gcs_call(GcsMethod.KV_PUT, KV_NAMESPACE, function_id, data, False)
        with self._lock:
            self._exported[id(obj)] = (obj, function_id)
            self._loaded[function_id] = obj
        return function_id

    def load(self, function_id: bytes):
        obj = self._loaded.get(function_id)
        if obj is not None:
            return obj
        data = self._cw.gcs_call(GcsMethod.KV_GET, KV_NAMESPACE, function_id)
        if data is None:
            raise RuntimeError(f"function {function_id.hex()} was never exported to the GCS")
        obj = cloudpickle.loads(data)
        with self._lock:
            self._loaded[function_id] = obj
        return obj


def _dumps_capturing_refs(obj):
    local = serialization._local
    previous = getattr(local, "refs", None)
    refs: list = []
    local.refs = refs
    try:
        return serialization.dumps_function(obj), refs
    finally:
        local.refs = previous
