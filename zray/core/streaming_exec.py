"""Worker side of streaming generator tasks (mixin for Executor).

A task or actor method submitted with ``num_returns="streaming"`` (Ray's
default for generator functions) sends every value it yields to its caller
at once, as a ``GeneratorItem`` on the reply connection, ahead of the call's
``TaskReply``.  Item ``i`` is the object ``object_id_for_return(task, 1 + i)``;
the reply's single return (index 0) is the completion record: the number of
items, or the error that ended the generator.  The caller's side is
``zray/core/object_ref_generator.py``.
"""
from __future__ import annotations

import threading

from .. import serialization
from ..sockets import messages as m
from .core_worker import current_task


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
        count = 0
        for value in result:
            self._send_item(spec, count, value)
            count += 1
        return [self._completion(count)]

    async def _stream_async(self, spec, result) -> list:
        """The same for an async actor: async generators and plain ones."""
        count = 0
        if hasattr(result, "__anext__"):
            async for value in result:
                self._send_item(spec, count, value)
                count += 1
        elif hasattr(result, "__next__"):
            for value in result:
                self._send_item(spec, count, value)
                count += 1
        else:
            raise _not_a_generator(spec, result)
        return [self._completion(count)]

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
