"""put / get / wait / futures for the CoreWorker (mixin, shares its state).

Small values live in the owner's reference table (in-process store); large
ones are written once into the host's shared-memory arena and read back as
read-only zero-copy views whose store pin is released when the last view
is garbage-collected.
"""
from __future__ import annotations

import concurrent.futures
import logging

from .. import exceptions, ids, serialization
from ..sockets import messages as m
from ..sockets.messages import ReturnKind
from ..store import layout, shm
from .object_ref import ObjectRef, receiving

log = logging.getLogger(__name__)

# A get/wait in a task lends its CPU out only past this (see _wait_blocked).
BLOCK_GRACE_S = 0.002
# Plain ints on the wire: an IntEnum member pickles as a constructor call.
INLINE, IN_STORE, ERROR = map(int, (ReturnKind.INLINE, ReturnKind.IN_STORE, ReturnKind.ERROR))
_loads = serialization.deserialize

_ABSENT = object()   # _get_from_store(..., absent=_ABSENT): the raylet has no copy


class ObjectApi:
    # ---------------------------------------------------------------- put ---
    def put(self, value, what: str = "the value passed to put()") -> ObjectRef:
        if isinstance(value, ObjectRef):
            raise TypeError("Calling 'put' on an ObjectRef is not allowed. If you really want "
                            "to do this, you can wrap the ObjectRef in a list and call 'put' on it.")
        inline, stream, buffers, contained = serialization.serialize(value, what)
        ctx = self.task_context()
        ctx.puts += 1
        object_id = ids.object_id_for_put(ctx.task_id, ctx.puts)
        location = None
        if inline is None:
            location = (self.node_id, self.write_to_store(object_id, stream, buffers))
        self.loop.acquire()
        try:
            entry = self.refs.add_owned(object_id, self.address)
            entry.ready = True
            if location is None:
                entry.kind, entry.data = INLINE, inline
            else:
                entry.kind, entry.data = IN_STORE, location
            if contained:
                entry.contained = contained
        finally:
            self.loop.release()
        return ObjectRef(object_id, self.address, _count=False)

    def write_to_store(self, object_id: bytes, stream, buffers) -> int:
        """Reserve, write and seal an object in this node's arena; returns its size."""
        lengths = [memoryview(b).nbytes for b in buffers]
        phases = layout.source_phases(buffers) if buffers else None
        size = layout.encoded_size(len(stream), lengths, phases)
        self.loop.acquire()
        try:
            self.flush_ref_ops()   # let the store free what this process dropped first
        finally:
            self.loop.release()
        reply = self.raylet_call(lambda rid: m.CreateObject(rid, object_id, size))
        if reply.offset < 0:
            if reply.error_code == m.CREATE_EXISTS:
                return reply.size   # sealed by an earlier attempt of the same task
            raise exceptions.ObjectStoreFullError(reply.message)
        if self._store_writer is None:
            self._store_writer = shm.ArenaWriter(self.arena_path, self.arena_capacity)
        layout.write_object(self._store_writer.view(reply.offset, size), stream, buffers, phases)
        self.send_raylet(m.SealObject(object_id))
        return size

    # ---------------------------------------------------------------- get ---
    def get(self, refs: list, timeout=None) -> list:
        table = self.refs
        errors_seen = table.errors_stored   # before the entries are looked at
        entries = self._prepare_waits(refs)
        pending = [e for e in entries if not e.ready]
        if pending:
            # Ray's get fails fast: one failed object raises at once, whatever
            # else is still pending (materialize raises an ERROR entry's error).
            if any(e.kind == ERROR for e in entries):
                return [self._first_error(refs, entries)]
            position = 0
            total = len(pending)

            def all_ready():
                nonlocal errors_seen, position
                if table.errors_stored != errors_seen:   # some object became an error
                    errors_seen = table.errors_stored
                    if any(e.kind == ERROR for e in pending):
                        return True
                i = position
                while i < total and pending[i].ready:
                    i += 1
                position = i
                return i == total

            if timeout == 0:
                self._drive_nonblocking()
                all_ready()
            else:
                self._wait_blocked(all_ready, timeout)
            if position < total:      # not all ready: an error ended the wait, or time did
                if any(e.kind == ERROR for e in pending):
                    return [self._first_error(refs, entries)]
                raise exceptions.GetTimeoutError(
                    f"Get timed out: {total - position} of {len(refs)} object(s) not ready "
                    f"after {timeout}s.")
        return [self.materialize(ref, entry) for ref, entry in zip(refs, entries)]

    def _first_error(self, refs, entries):
        """Raises the error of the first failed object in list order."""
        for ref, entry in zip(refs, entries):
            if entry.kind == ERROR:
                return self.materialize(ref, entry)   # raises

    def _prepare_waits(self, refs) -> list:
        """Entries for ``refs``; starts owner fetches for borrowed ones."""
        entries = []
        objects = self.refs.objects
        self.loop.acquire()
        try:
            for ref in refs:
                if type(ref) is not ObjectRef:
                    raise TypeError(f"Expected an ObjectRef, got {type(ref).__name__}: {ref!r}")
                entry = objects.get(ref._id)
                if entry is None:
                    entry = self.refs.entry_for_ref(ref._id, ref._owner)
                if not entry.ready and not entry.owned:
                    location = ref._location
                    if (location is not None and location[0] == self.node_id
                            and entry.owner[0] in self._live_owners and not entry.fetching):
                        # Read from the store without asking the (known alive) owner;
                        # materialize asks it after all if the store has no copy.
                        self.set_object_ready(ref._id, IN_STORE, location)
                    else:
                        self._request_object_status(ref._id, entry)
                entries.append(entry)
        finally:
            self.loop.release()
        return entries

    def materialize(self, ref, entry):
        kind = entry.kind
        if kind == ERROR:
            raise error_from_blob(entry.data)
        received = []
        token = receiving.set(received)
        try:
            if kind == INLINE:
                value = _loads(entry.data)
            else:
                hinted = ref._location is not None and not entry.owned
                value = self._get_from_store(ref._id, _ABSENT if hinted else None)
                if value is _ABSENT:
                    # The owner's word in the pickle is stale: ask the owner itself.
                    ref._location = None
                    self._forget_value(entry)
                    return self.get([ref])[0]
        finally:
            receiving.reset(token)
        if received:   # refs inside the value: be counted by their owners first
            self.borrow_received(received)
        return value

    def _get_from_store(self, object_id: bytes, absent=None):
        """The object's value from this node's store; ObjectLostError if the
        store has no copy, or ``absent`` returned instead when given."""
        self.loop.acquire()
        try:
            if self._pending_releases:
                self.flush_ref_ops()
            cached = self.pin_cache.take(object_id)
        finally:
            self.loop.release()
        if cached is not None:    # read it moments ago: its pin is still ours
            return self._read_pinned(object_id, *cached)
        reply = self.raylet_call(lambda rid: m.GetObjectLocal(rid, object_id))
        if reply.offset == -2:
            raise exceptions.ObjectStoreFullError(
                f"object {object_id.hex()} ({reply.size} bytes) is spilled and cannot be "
                f"restored: no room in the object store within object_store_full_timeout_s "
                f"(the objects in it are being read: drop some values you got from "
                f"zray.get, or raise object_store_memory)")
        if reply.offset == -3:
            raise exceptions.ObjectLostError(object_id.hex(), detail=(
                "Reading the object back from the spill store failed (the raylet log says why)."))
        if reply.offset < 0:
            if absent is not None:
                return absent
            raise exceptions.ObjectLostError(object_id.hex(), detail=(
                "The object is not in this node's object store (cross-node transfer and "
                "reconstruction are not available yet)."))
        return self._read_pinned(object_id, reply.offset, reply.size)

    def _forget_value(self, entry) -> None:
        self.loop.acquire()
        try:
            entry.ready, entry.kind, entry.data = False, None, None
        finally:
            self.loop.release()

    def _read_pinned(self, object_id: bytes, offset: int, size: int):
        """The value of a store object we hold a pin on; the pin goes back
        (to the pin cache) when the last view of it dies."""
        view = shm.map_readonly(self.arena_path, offset, size,
                                lambda: self._pending_releases.append((object_id, offset, size)))
        stream, buffers = layout.read_object(view)
        return _loads(stream, buffers)

    # --------------------------------------------------------------- wait ---
    def wait(self, refs: list, num_returns: int = 1, timeout=None):
        waitables = self._waitables(refs)

        def enough_ready():
            count = 0
            for waitable in waitables:
                if waitable.ready:
                    count += 1
                    if count >= num_returns:
                        return True
            return False

        if not enough_ready():
            if timeout == 0:
                self._drive_nonblocking()
            else:
                self._wait_blocked(enough_ready, timeout)
        ready, not_ready = [], []
        for ref, waitable in zip(refs, waitables):
            if waitable.ready and len(ready) < num_returns:
                ready.append(ref)
            else:
                not_ready.append(ref)
        return ready, not_ready

    def _waitables(self, refs: list) -> list:
        """Per item, something with ``.ready``: a ref's entry, or an
        ObjectRefGenerator itself (ready when next() would not block)."""
        plain = [ref for ref in refs if type(ref) is ObjectRef]
        if len(plain) == len(refs):
            return self._prepare_waits(refs)
        entries = iter(self._prepare_waits(plain))
        return [next(entries) if type(ref) is ObjectRef else ref for ref in refs]

    # ------------------------------------------------------------ futures ---
    def future_of(self, ref) -> concurrent.futures.Future:
        future = concurrent.futures.Future()
        entry = self._prepare_waits([ref])[0]

        def resolve():
            try:
                future.set_result(self.materialize(ref, entry))
            except BaseException as exc:  # the value's error is the future's error
                future.set_exception(exc)

        def on_ready():
            self.future_executor().submit(resolve)

        self.loop.acquire()
        try:
            if entry.ready:
                on_ready()
            else:
                self.refs.on_ready(entry, on_ready)
        finally:
            self.loop.release()
        return future

    def future_executor(self):
        if self._future_executor is None:
            self._future_executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=4, thread_name_prefix="zray-future")
        return self._future_executor

    # ----------------------------------------------------------- blocking ---
    def _drive_nonblocking(self) -> None:
        """Handle what has already arrived, without waiting: a zero-timeout get /
        wait polled in a loop must see results even when no thread is blocked
        driving the sockets (the background thread defers to busy callers)."""
        loop = self.loop
        loop.acquire()
        try:
            loop.drain_all()
            loop.maybe_tick()
        finally:
            loop.release()

    def _wait_blocked(self, predicate, timeout) -> bool:
        """wait_until for get/wait: the task's CPU is given back meanwhile (once
        the wait outlasts BLOCK_GRACE_S), and a task cancelled while it waits
        here raises its cancellation."""
        executor = self.executor
        watch = executor is not None and executor.on_main_thread()
        check = predicate
        if watch:
            executor.main_waiting += 1
            check = lambda: predicate() or executor.cancel_requested is not None  # noqa: E731
        try:
            ok = False
            if executor is not None and executor.holds_task_resources():
                # A borrowed object's status is one round trip to its owner: lending
                # the CPU for that would make the raylet start workers for nothing.
                grace = BLOCK_GRACE_S if timeout is None else min(BLOCK_GRACE_S, timeout)
                ok = self.loop.wait_until(check, grace, spin=True)
                if timeout is not None:
                    timeout = max(0.0, timeout - grace)
            if not ok:
                self.notify_blocked()
                try:
                    ok = self.loop.wait_until(check, timeout, spin=True)
                finally:
                    self.notify_unblocked()
        finally:
            if watch:
                executor.main_waiting -= 1
        if watch:
            executor.raise_if_cancelled()
        return ok

    def notify_blocked(self) -> None:
        """A task blocked in get/wait gives its CPU back so nested tasks can run."""
        executor = self.executor
        if executor is None or not executor.holds_task_resources():
            return
        self._blocked_depth += 1
        if self._blocked_depth == 1:
            self.loop.acquire()
            try:
                self.loop.send(self.raylet, m.encode(m.NotifyBlocked()))
                executor.requeue_unstarted()
            finally:
                self.loop.release()

    def notify_unblocked(self) -> None:
        executor = self.executor
        if executor is None or self._blocked_depth == 0:
            return
        self._blocked_depth -= 1
        if self._blocked_depth == 0:
            self.send_raylet(m.NotifyUnblocked())


def dependency_error_blob(blob: bytes, spec) -> bytes:
    """The error of a task or actor call that never ran because an argument
    failed: Ray's RayTaskError of the call ("At least one of the input
    arguments ... could not be computed") whose cause is the argument's."""
    upstream = error_from_blob(blob)
    if isinstance(upstream, exceptions.RaySystemError) and not isinstance(
            upstream, exceptions.RayTaskError):
        return blob
    cause = upstream.cause if isinstance(upstream, exceptions.RayTaskError) else upstream
    name = spec.method_name if spec.actor_id and spec.method_name else spec.function_name
    err = exceptions.RayTaskError(
        name, "At least one of the input arguments for this task could not be computed:\n"
        f"{exceptions.qualified_name(type(upstream))}: {upstream}", cause)
    try:
        return serialization.serialize_inline(err)[0]
    except Exception:
        return blob


def error_from_blob(blob):
    """The exception to raise for an ERROR object."""
    try:
        err = _loads(blob)
    except Exception as exc:
        return exceptions.RaySystemError(f"could not deserialize a task error: {exc!r}")
    if isinstance(err, exceptions.RayTaskError):
        return err.as_instanceof_cause()
    return err
