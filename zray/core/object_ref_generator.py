"""Caller side of streaming generator tasks: Ray's ObjectRefGenerator.

The worker reports each yielded value as a ``GeneratorItem`` before the
call's reply (``streaming_exec.py``).  The caller owns every item: on the
report it creates the item's entry with one count, which the generator
holds until ``next()`` hands that count to the ObjectRef it returns.  A
generator dropped before the end releases the items it did not hand out, and
later reports for it are discarded (their store copies freed).  The call's
single return is the completion record: the item count, or the error that
ended the generator, which ``next()`` returns as one last ref (``get`` on it
raises), as Ray does.

With ``_generator_backpressure_num_objects=N`` the worker stops after N
items the caller has not taken yet; each ``next()`` that hands one out tells
the worker (``GeneratorConsumed``), and a dropped generator releases it for
good.
"""
from __future__ import annotations

import asyncio
from collections import deque

from .. import exceptions, ids
from ..sockets import messages as m
from ..sockets.messages import ReturnKind
from . import process_state
from .object_ref import ObjectRef

IN_STORE = int(ReturnKind.IN_STORE)
ERROR = int(ReturnKind.ERROR)


UNLIMITED = 1 << 62   # "consumed" count that lets a generator run to its end


class _Stream:
    __slots__ = ("reported", "backpressure")

    def __init__(self, backpressure: bool):
        self.reported = 0             # items received so far (they arrive in order)
        self.backpressure = backpressure   # the worker waits for GeneratorConsumed


class GeneratorStreams:
    """Owner-side table of the streaming calls this process submitted (lock held)."""

    def __init__(self, core_worker):
        self.cw = core_worker
        self.streams: dict = {}       # task id -> _Stream
        self.dropped: deque = deque()  # (task id, items handed out), appended from __del__

    def open(self, task_id: bytes, options) -> _Stream:
        backpressure = bool(options and options.get("generator_backpressure"))
        stream = self.streams[task_id] = _Stream(backpressure)
        return stream

    def consumed(self, task_id: bytes, count: int) -> None:
        """Tell the worker running ``task_id`` that ``count`` items are taken (lock held)."""
        cw = self.cw
        lease = cw.tasks.in_flight.get(task_id)
        sock = lease.sock if lease is not None else None
        if sock is None:
            actor = cw.actors.in_flight.get(task_id)
            sock = actor.sock if actor is not None else None
        if sock is not None:   # else the call has ended (or not started: nothing waits)
            cw.loop.send(sock, m.encode(m.GeneratorConsumed(task_id, count)))

    def on_item(self, msg) -> None:
        cw = self.cw
        stream = self.streams.get(msg.task_id)
        item_id = ids.object_id_for_return(msg.task_id, 1 + msg.index)
        if stream is None or msg.index != stream.reported:
            # Dropped generator, or a retried call re-yielding what we have.
            if stream is None and msg.kind == IN_STORE:
                cw.refs.freed_store_objects.append(item_id)
            return
        cw.refs.add_owned(item_id, cw.address)     # this count is the generator's
        if msg.contained:
            cw.accept_reply_refs(msg, [item_id])
        stream.reported += 1
        cw.set_object_ready(item_id, msg.kind, msg.data)

    def release_dropped(self) -> None:
        """Items of dropped generators that were never handed out go now."""
        ops = self.cw.refs.ref_ops
        address = self.cw.address
        while self.dropped:
            task_id, handed_out = self.dropped.popleft()
            stream = self.streams.pop(task_id, None)
            if stream is None:
                continue
            if stream.backpressure:   # nobody will take more: let the generator finish
                self.consumed(task_id, UNLIMITED)
            for index in range(handed_out, stream.reported):
                ops.append((ids.object_id_for_return(task_id, 1 + index), address, -1))


class ObjectRefGenerator:
    """Iterate to get the ObjectRef of each value the task yields, as soon as
    it is yielded; ``for`` and ``async for`` both work."""

    def __init__(self, core_worker, task_id: bytes, stream: _Stream, completion: ObjectRef):
        self._cw = core_worker
        self._task_id = task_id
        self._stream = stream
        self._completion = completion
        self._index = 0
        self._done = False
        self._cancelled = False   # zray.cancel(generator): items not yet taken are skipped

    def __iter__(self):
        return self

    def __next__(self) -> ObjectRef:
        return self._next(None)

    def _next(self, timeout) -> ObjectRef:
        if self._done:
            raise StopIteration
        cw, stream, index = self._cw, self._stream, self._index
        completion = cw.refs.objects.get(self._completion._id)

        def ready():
            return stream.reported > index or completion is None or completion.ready
        if self._cancelled:   # as Ray: after a cancel, next() gives the task's end
            ended = lambda: completion is None or completion.ready   # noqa: E731
            if not ended() and not cw._wait_blocked(ended, timeout):
                raise exceptions.GetTimeoutError(
                    f"the cancelled generator task did not end within {timeout}s")
            if completion is not None and completion.kind == ERROR:
                self._done = True
                return ObjectRef(self._completion._id, self._completion._owner)
        if not ready() and not cw._wait_blocked(ready, timeout):
            raise exceptions.GetTimeoutError(
                f"no item {index} from the generator task within {timeout}s")
        if stream.reported > index:
            self._index = index + 1
            if stream.backpressure:
                cw.loop.acquire()
                try:
                    cw.generator_streams.consumed(self._task_id, index + 1)
                finally:
                    cw.loop.release()
            return ObjectRef(ids.object_id_for_return(self._task_id, 1 + index), cw.address,
                             _count=False)
        self._done = True
        if completion is not None and completion.kind == ERROR:
            return ObjectRef(self._completion._id, self._completion._owner)
        raise StopIteration

    def _next_or_none(self):
        try:
            return self._next(None)
        except StopIteration:
            return None

    def __aiter__(self):
        return self

    async def __anext__(self) -> ObjectRef:
        ref = await asyncio.get_running_loop().run_in_executor(None, self._next_or_none)
        if ref is None:
            raise StopAsyncIteration
        return ref

    @property
    def ready(self) -> bool:
        """What wait() checks: next() would return at once (as next_ready())."""
        return self.next_ready()

    def next_ready(self) -> bool:
        """True when next() would return at once (an item is waiting, or the
        task has ended)."""
        if self._done:
            return True
        completion = self._cw.refs.objects.get(self._completion._id)
        return (self._stream.reported > self._index or completion is None
                or completion.ready)

    def completed(self) -> ObjectRef:
        """A ref that is ready when the task has finished (get raises its error)."""
        return self._completion

    def is_finished(self) -> bool:
        return self._done

    def task_id(self):
        return ids.TaskID(self._task_id)

    def __repr__(self):
        return f"ObjectRefGenerator({self._task_id.hex()})"

    def __del__(self):
        worker = process_state.worker
        if worker is self._cw and worker is not None:
            try:
                worker.generator_streams.dropped.append((self._task_id, self._index))
            except Exception:
                pass

    def __reduce__(self):
        raise TypeError("An ObjectRefGenerator cannot be passed to another task or stored in an "
                        "object; pass the ObjectRefs it yields instead.")


class DynamicObjectRefGenerator:
    """The value of a ``num_returns="dynamic"`` call (Ray's older generator
    form): the ObjectRefs of every item, available once the task has ended."""

    def __init__(self, refs):
        self._refs = deque(refs)

    def __iter__(self):
        while self._refs:
            yield self._refs.popleft()

    def __len__(self) -> int:
        return len(self._refs)


def dynamic_result(cw, generator: ObjectRefGenerator) -> ObjectRef:
    """A ref the caller owns whose value, once the streaming call behind
    ``generator`` has ended, is a DynamicObjectRefGenerator of its items (an
    error that ended it is one more item, whose get raises).  The value holds
    the items' refs (as a put of a list of refs would), so they live as long
    as it does."""
    from .. import serialization
    ctx = cw.task_context()
    ctx.puts += 1
    object_id = ids.object_id_for_put(ctx.task_id, ctx.puts)

    def on_done():   # lock held; every item was reported before the completion
        refs = []
        while generator._stream.reported > generator._index:
            refs.append(ObjectRef(ids.object_id_for_return(generator._task_id,
                                                           1 + generator._index),
                                  cw.address, _count=False))
            generator._index += 1
        generator._done = True
        completion = cw.refs.objects.get(generator._completion._id)
        if completion is not None and completion.kind == ERROR:
            refs.append(generator._completion)   # get() on the last item raises, as in Ray
        inline, _, _, contained = serialization.serialize(DynamicObjectRefGenerator(refs))
        entry = cw.refs.objects.get(object_id)
        if entry is not None and contained:
            entry.contained = contained
        cw.set_object_ready(object_id, int(ReturnKind.INLINE), inline)

    cw.loop.acquire()
    try:
        cw.refs.add_owned(object_id, cw.address)
        completion = cw.refs.objects.get(generator._completion._id)
        if completion is None or completion.ready:
            on_done()
        else:
            cw.refs.on_ready(completion, on_done)
    finally:
        cw.loop.release()
    return ObjectRef(object_id, cw.address, _count=False)
