"""Cancelling what an executor runs (mixin of Executor), as Ray does: a queued
task is answered TaskCancelledError; a running normal task gets
KeyboardInterrupt (an async exception, sent only while the main thread runs
the task's own code), or exits at once with ``force``; an async actor call's
asyncio task is cancelled; a running sync actor call is not interrupted."""
from __future__ import annotations

import ctypes
import logging
import os
import threading

from .. import exceptions
from .task_spec import NORMAL_TASK

log = logging.getLogger(__name__)


class TaskCancellation:
    def _init_cancellation(self) -> None:
        # A cancel that arrives while the main-thread task waits inside zray (get /
        # wait, or any call whose loop handles the CancelTask) is flagged here and
        # raised by the wait: an async exception would fire inside an io-loop
        # handler and be swallowed there.
        self.cancel_requested = None
        self.main_waiting = 0
        # The interrupt flag changes under this lock, and leaving the task's
        # code drops an interrupt not raised yet.
        self.cancelled = None                # task id asked to cancel (is_canceled)
        self._interrupt_lock = threading.Lock()
        self._interruptible = False
        self._interrupt_sent = False

    def on_cancel(self, identity: bytes, msg) -> None:
        for item in list(self.queue):
            if item[1].task_id == msg.task_id:
                self.queue.remove(item)
                self._reply_error(item[0], item[1], exceptions.TaskCancelledError(msg.task_id.hex()))
                return
        if self.mode == "async":   # a running async call: cancel its asyncio.Task
            self._cancel_async(msg.task_id)
            return
        running = self.running
        # Running actor calls are not interrupted (Ray: only async actor calls are).
        if running is not None and running.task_id == msg.task_id and running.kind == NORMAL_TASK:
            if msg.force:
                log.warning("force-cancelling task %s: exiting", msg.task_id.hex())
                os._exit(1)
            if msg.recursive:
                self._cancel_children(msg.task_id)
            self.cancelled = msg.task_id
            with self._interrupt_lock:
                if (self._interruptible and not self.main_waiting
                        and threading.get_ident() != self._main_thread):
                    _set_async_exc(self._main_thread, KeyboardInterrupt)
                    self._interrupt_sent = True
                else:
                    self.cancel_requested = msg.task_id

    def _run_interruptible(self, call, *args):
        """``call(*args)``: the normal task's own code, where a cancel raises
        KeyboardInterrupt."""
        with self._interrupt_lock:
            running = self.running
            if running is not None and self.cancel_requested == running.task_id:
                # Cancelled before its code started (e.g. while its arguments
                # were unpickled): it never runs, as in Ray.
                self.cancel_requested = None
                raise KeyboardInterrupt
            self._interruptible = True
        try:
            return call(*args)
        finally:
            with self._interrupt_lock:
                self._interruptible = False
                if self._interrupt_sent:
                    self._interrupt_sent = False
                    _set_async_exc(self._main_thread, None)   # the task is past its code

    def _cancel_children(self, task_id: bytes) -> None:
        """cancel(recursive=True): the tasks the cancelled task submitted (lock held)."""
        tasks = self.cw.tasks
        for child in [t for t in tasks.tasks.values() if t.spec.parent_task_id == task_id]:
            tasks.cancel(child.spec.task_id, False, True)

    def raise_if_cancelled(self) -> None:
        """Raise Ray's KeyboardInterrupt if the main-thread task was cancelled
        while it waited (an actor call's wait raises TaskCancelledError)."""
        task_id = self.cancel_requested
        if task_id is None:
            return
        self.cancel_requested = None
        running = self.running
        if running is not None and running.task_id == task_id:
            if running.kind == NORMAL_TASK:
                raise KeyboardInterrupt
            raise exceptions.TaskCancelledError(task_id.hex())


def _set_async_exc(thread_id: int, exc_type) -> None:
    """Raise ``exc_type`` in the thread at its next bytecode (None: cancel one pending)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), None if exc_type is None else ctypes.py_object(exc_type))
