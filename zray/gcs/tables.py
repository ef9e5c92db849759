"""The GCS's durable tables: one LMDB env at ``<storage_dir>/gcs.lmdb``.

Named sub-databases::

    nodes   node_id (bytes)  -> pickled node record dict
    actors  actor_id (bytes) -> pickled actor record dict
    jobs    job_id (4 bytes) -> pickled job record dict
    placement_groups  pg_id (bytes) -> pickled placement-group record dict
    kv      u16 len(namespace) + namespace + key -> raw value bytes
    meta    name (bytes)     -> pickled dict (e.g. b"next_job_id" -> {"value": n})

Write-through: every mutation is its own committed transaction, made before
the GCS acknowledges the request that caused it, so a crash after the ack
never loses what the ack promised to anything but an OS crash.  The env is
opened with sync=False / metasync=False (LIMITS.md: ~250k commits/s instead
of ~3k/s with fsync) and ``checkpoint()`` (env.sync) is called by the server
about once a second and on shutdown.

The map grows (doubles) on MapFullError; the initial map is sparse address
space, not disk.  LMDB caps keys at ``max_key_size()`` (511 bytes), so a KV
key whose namespace + key is longer is refused with a ValueError.
"""
from __future__ import annotations

import os
import pickle
from typing import Callable, Iterator

import lmdb

NODES = "nodes"
ACTORS = "actors"
JOBS = "jobs"
PLACEMENT_GROUPS = "placement_groups"
_KV = "kv"
_META = "meta"
RECORD_TABLES = (NODES, ACTORS, JOBS, PLACEMENT_GROUPS)

DEFAULT_MAP_SIZE = 1 << 30          # address space only; LMDB files are sparse
_NEXT_JOB_ID = b"next_job_id"


class GcsTables:
    """Pickled-dict tables plus the internal KV and the job counter."""

    def __init__(self, storage_dir: str, map_size: int = DEFAULT_MAP_SIZE):
        self.path = os.path.join(storage_dir, "gcs.lmdb")
        os.makedirs(self.path, exist_ok=True)
        self._env = lmdb.open(self.path, map_size=map_size, max_dbs=8,
                              sync=False, metasync=False, subdir=True)
        self._dbs = {name: self._env.open_db(name.encode())
                     for name in (*RECORD_TABLES, _KV, _META)}
        self._max_key = self._env.max_key_size()

    # ------------------------------------------------------------ plumbing ---
    def _write(self, body: Callable[[lmdb.Transaction], object]):
        """Run ``body`` in one committed write txn, growing the map if full."""
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    return body(txn)
            except lmdb.MapFullError:
                # The txn was aborted on the way out; retry in a bigger map.
                self._env.set_mapsize(self._env.info()["map_size"] * 2)

    def checkpoint(self) -> None:
        """Flush committed transactions to disk (sync is off per commit)."""
        self._env.sync(True)

    def close(self) -> None:
        self.checkpoint()
        self._env.close()

    # ------------------------------------------------------ record tables ---
    def put(self, table: str, key: bytes, record: dict) -> None:
        value = pickle.dumps(record, 5)
        db = self._dbs[table]
        self._write(lambda txn: txn.put(key, value, db=db))

    def get(self, table: str, key: bytes):
        """The record under ``key``, or None."""
        with self._env.begin(db=self._dbs[table]) as txn:
            raw = txn.get(key)
            return pickle.loads(raw) if raw is not None else None

    def delete(self, table: str, key: bytes) -> bool:
        db = self._dbs[table]
        return bool(self._write(lambda txn: txn.delete(key, db=db)))

    def load(self, table: str) -> dict:
        """Every record of ``table`` as {key: dict} (used once, at start)."""
        with self._env.begin(db=self._dbs[table]) as txn:
            return {bytes(k): pickle.loads(v) for k, v in txn.cursor()}

    # ---------------------------------------------------------- job ids ---
    def next_job_id(self) -> int:
        """1, 2, 3, ... - persisted, so a restarted GCS never reuses one."""
        db = self._dbs[_META]

        def bump(txn):
            raw = txn.get(_NEXT_JOB_ID, db=db)
            value = pickle.loads(raw)["value"] if raw is not None else 1
            txn.put(_NEXT_JOB_ID, pickle.dumps({"value": value + 1}, 5), db=db)
            return value
        return self._write(bump)

    # ----------------------------------------------------------------- KV ---
    def _kv_key(self, namespace: str, key: bytes) -> bytes:
        ns = namespace.encode()
        full = len(ns).to_bytes(2, "big") + ns + key
        if len(full) > self._max_key:
            raise ValueError(f"KV key too long: namespace + key is {len(full)} bytes, "
                             f"the limit is {self._max_key}")
        return full

    def kv_put(self, namespace: str, key: bytes, value: bytes, overwrite: bool) -> bool:
        """True if the key was new.  With overwrite=False an existing value stays."""
        full, db = self._kv_key(namespace, key), self._dbs[_KV]

        def put(txn):
            existed = txn.get(full, db=db) is not None
            if overwrite or not existed:
                txn.put(full, value, db=db)
            return not existed
        return self._write(put)

    def kv_get(self, namespace: str, key: bytes):
        with self._env.begin(db=self._dbs[_KV]) as txn:
            value = txn.get(self._kv_key(namespace, key))
            return bytes(value) if value is not None else None

    def kv_del(self, namespace: str, key: bytes, by_prefix: bool = False) -> int:
        """Number of keys deleted (0 or 1, or any number with by_prefix)."""
        db = self._dbs[_KV]
        if not by_prefix:
            full = self._kv_key(namespace, key)
            return int(bool(self._write(lambda txn: txn.delete(full, db=db))))
        doomed = [self._kv_key(namespace, k) for k in self.kv_keys(namespace, key)]

        def delete_all(txn):
            return sum(bool(txn.delete(k, db=db)) for k in doomed)
        return self._write(delete_all)

    def kv_keys(self, namespace: str, prefix: bytes) -> list:
        start = self._kv_key(namespace, prefix)
        ns_len = len(start) - len(prefix)
        return [k[ns_len:] for k in self._scan(start)]

    def _scan(self, start: bytes) -> Iterator[bytes]:
        with self._env.begin(db=self._dbs[_KV]) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(start):
                return
            for key in cursor.iternext(keys=True, values=False):
                if not key.startswith(start):
                    break
                yield bytes(key)
