"""Worker side of streaming generator tasks (mixin for Executor).

A task or actor method submitted with ``num_returns="streaming"`` (Ray's
default for generator functions) sends every value it yields to its caller
at once, as a ``GeneratorItem`` on the reply connection, ahead of the call's
``TaskReply``.  Item ``i`` is the object ``object_id_for_return(task, 1 + i)``;
the reply's single return (index 0) is the completion record: the number of
items, or the error that ended the generator.  The caller's side is
``zray/core/object_ref_generator.py``.

Backpressure (``generator_backpressure`` N in the spec's options, Ray's
``_generator_backpressure_num_objects``): after sending an item the
generator waits while N sent items are not yet taken by the caller, whose
``GeneratorConsumed`` messages raise the count.  A caller that dies while
the generator waits ends it (checked with the GCS about once a second).
"""
from __future__ import annotations

import asyncio
import threading

from .. import exceptions, serialization
from ..sockets import messages as m
from ..sockets.messages import GcsMethod
from .core_worker import current_task

OWNER_CHECK_S = 1.0


def is_streaming(spec) -> bool:
    options = spec.options
    return options is not None and bool(options.get("generator"))


def _not_a_generator(spec, result) -> TypeError:
    return TypeError(f"'{spec.function_name}' was called with num_returns='streaming' but returned "
                     f"{type(result).__name__}, not a generator")


class StreamingExecution:
    def _stream(self, spec, result) -> list:
        """Send each item a (sync) generator yields; the completion record."""
        if not hasattr(result, "__next__"):
            raise _not_a_generator(spec, result)
        limit = spec.options.get("generator_backpressure")
        count = 0
        try:
            for value in result:
                self._send_item(spec, count, value)
                count += 1
                if limit:
                    self._wait_consumed(spec, count - limit + 1)
        finally:
            self._consumed.pop(spec.task_id, None)
        return [self._completion(count)]

    async def _stream_async(self, spec, result) -> list:
        """The same for an async actor: async generators and plain ones."""
        limit = spec.options.get("generator_backpressure")
        count = 0
        try:
            if hasattr(result, "__anext__"):
                async for value in result:
                    self._send_item(spec, count, value)
                    count += 1
                    if limit:
                        await self._wait_consumed_async(spec, count - limit + 1)
            elif hasattr(result, "__next__"):
                for value in result:
                    self._send_item(spec, count, value)
                    count += 1
                    if limit:
                        await self._wait_consumed_async(spec, count - limit + 1)
            else:
                raise _not_a_generator(spec, result)
        finally:
            self._consumed.pop(spec.task_id, None)
            self._consumed_events.pop(spec.task_id, None)
        return [self._completion(count)]

    # ------------------------------------------------------- backpressure ---
    def on_generator_consumed(self, msg) -> None:
        """The caller took ``msg.count`` items of a generator (lock held, any thread)."""
        consumed = self._consumed
        if msg.count > consumed.get(msg.task_id, 0):
            consumed[msg.task_id] = msg.count
            waiting = self._consumed_events.get(msg.task_id)
            if waiting is not None:   # (its event loop, the event it waits on)
                waiting[0].call_soon_threadsafe(waiting[1].set)

    def _wait_consumed(self, spec, needed: int) -> None:
        """Until the caller has taken ``needed`` items (a sync generator's thread)."""
        consumed = self._consumed
        task_id = spec.task_id
        while consumed.get(task_id, 0) < needed:
            # Blocked like a get: the CPU is lent out and a cancel raises here.
            if not self.cw._wait_blocked(lambda: consumed.get(task_id, 0) >= needed,
                                         OWNER_CHECK_S):
                self._check_caller_alive(spec)

    async def _wait_consumed_async(self, spec, needed: int) -> None:
        consumed = self._consumed
        task_id = spec.task_id
        while consumed.get(task_id, 0) < needed:
            event = self._consumed_events.setdefault(
                task_id, (asyncio.get_running_loop(), asyncio.Event()))[1]
            event.clear()
            if consumed.get(task_id, 0) >= needed:
                break
            try:
                await asyncio.wait_for(event.wait(), OWNER_CHECK_S)
            except asyncio.TimeoutError:
                await asyncio.get_running_loop().run_in_executor(
                    None, self._check_caller_alive, spec)

    def _check_caller_alive(self, spec) -> None:
        """Raise if the caller the generator waits for has died (nobody will consume)."""
        try:
            death = self.cw.gcs_call(GcsMethod.GET_WORKER_DEATH, spec.owner_id)
        except Exception:
            return   # the GCS is unreachable now: keep waiting
        if death is not None:
            raise exceptions.OwnerDiedError(
                f"the caller of generator '{spec.function_name}' died while it waited for the "
                f"caller to take its items: {death}")

    @staticmethod
    def _completion(count: int) -> tuple:
        return (int(m.ReturnKind.INLINE), serialization.serialize_inline(count)[0])

    def _send_item(self, spec, index: int, value) -> None:
        cw = self.cw
        refs: list = []
        kind, data = self._pack_value(spec, 1 + index, 0, value, refs)
        contained = cw.hand_over_returned_refs(spec, refs) if refs else ()
        item = m.GeneratorItem(spec.task_id, index, kind, data, cw.worker_id, (), contained)
        cw.loop.acquire()
        try:
            cw.reply_to(current_task.get().caller, item)
            if self.mode == "async" and threading.get_ident() == self._main_thread:
                cw.loop.poll_once(0)   # as in _reply: a send can consume the FD edge
        finally:
            cw.loop.release()
