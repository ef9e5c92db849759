"""Async actors: calls run as coroutines on an asyncio loop on the worker's
main thread (mixin for Executor).

The loop also drives the process's sockets (readers on every ZMQ_FD), so a
call starts and replies without a thread hand-off; the IoLoop counts it as a
permanent leader and its background thread stands by.  max_concurrency
bounds the coroutines running at once (a semaphore).
"""
from __future__ import annotations

import asyncio
import inspect
import os
import threading
import time

import zmq

from .. import exceptions
from .core_worker import TaskContext, current_task
from .streaming_exec import is_streaming
from .task_events import note_ended, note_started


class ActorExit(SystemExit):
    """Raised by exit_actor() in a sync or threaded actor (a SystemExit, as
    Ray's) and by __ray_terminate__: unwinds the call, then the worker exits."""


def _ray_ready():
    return True


def _ray_terminate():
    raise ActorExit()


# Methods every Ray actor answers: readiness, and a graceful exit that runs
# after the calls queued before it (later ones fail, as with exit_actor()).
_BUILTIN_METHODS = {"__ray_ready__": _ray_ready, "__ray_terminate__": _ray_terminate}


_class_members: dict = {}   # (class, name) -> the attribute as the class defines it


def actor_method(actor, name: str):
    """The method ``name`` of ``actor``'s class bound to it, or one of Ray's
    built-in ones.  Looked up on the class, as Ray does, so an instance
    attribute of the same name does not hide the method."""
    cls = type(actor)
    key = (cls, name)
    member = _class_members.get(key)
    if member is None:
        try:
            member = inspect.getattr_static(cls, name)
        except AttributeError:
            member = _NOT_ON_CLASS
        _class_members[key] = member
    if member is not _NOT_ON_CLASS:
        getter = getattr(member, "__get__", None)
        return member if getter is None else getter(actor, cls)
    try:
        return getattr(actor, name)     # e.g. from __getattr__
    except AttributeError:
        builtin = _BUILTIN_METHODS.get(name)
        if builtin is None:
            raise
        return builtin


_NOT_ON_CLASS = object()


class AsyncExecution:
    def _run_event_loop(self) -> None:
        """The async actor's main thread runs its asyncio loop from here on."""
        loop = self._async_loop
        asyncio.set_event_loop(loop)
        io = self.cw.loop
        io.acquire()
        io._leading += 1   # counted under the lock, as wait_until does
        io.release()
        watched: dict = {}
        synced = [-1]      # io._sockets_version the readers were last synced to

        def pump() -> bool:
            handled = False
            if io.lock.acquire(False):   # else another thread drives and drains
                try:
                    # Sockets sent on since, then the FDs that fired (io_loop.poll_once).
                    handled = io.poll_once(0)
                    io.maybe_tick()
                finally:
                    io.release()
            if synced[0] != io._sockets_version:
                synced[0] = io._sockets_version
                current = set(io._handlers)
                for sock in list(watched):
                    if sock not in current:
                        loop.remove_reader(watched.pop(sock))
                for sock in current - set(watched):
                    try:
                        fd = sock.getsockopt(zmq.FD)
                    except zmq.ZMQError:
                        continue
                    watched[sock] = fd
                    loop.add_reader(fd, pump)
            return handled

        def spin(until: float) -> None:
            # Poll for the next call instead of sleeping in epoll (IoLoop.IDLE_SPIN_S).
            if self._async_tasks or self.exiting or time.monotonic() >= until:
                return
            if not pump():
                os.sched_yield()
            loop.call_soon(spin, until)

        self._spin_for_next_call = spin

        def periodic():
            if self.exiting or self.exit_requested:   # exit_actor() in a background task too
                self.exiting = True
                loop.stop()
                return
            pump()
            loop.call_later(0.05, periodic)

        loop.call_soon(periodic)
        try:
            loop.run_forever()
        finally:
            io.acquire()
            io._leading -= 1
            io.release()

    def _start_event_loop(self, max_concurrency: int, groups: dict) -> None:
        """The default group's loop runs on the main thread once the creation
        task has replied.  As in Ray, each concurrency group runs its calls on
        an event loop of its own, in a thread of its own (a call that blocks
        its loop holds up only its group), and limits them to its size."""
        self._async_loop = asyncio.new_event_loop()
        self._async_sem = asyncio.Semaphore(max_concurrency)
        self._group_sems = {name: asyncio.Semaphore(limit) for name, limit in groups.items()}
        for name in groups:
            loop = self._group_loops[name] = asyncio.new_event_loop()
            threading.Thread(target=_run_loop_forever, args=(loop,), daemon=True,
                             name=f"zray-async-{name}").start()

    def _start_async(self, identity, spec, loop) -> None:
        """On ``loop``'s thread: the default loop (main thread) or a group's."""
        if self._idle_since is not None:
            self.cw.loop.note_idle_wait(time.monotonic() - self._idle_since)
            self._idle_since = None
        # _run_async forgets the task itself: a done callback would cost
        # another pass of the event loop per call.
        self._async_tasks[spec.task_id] = loop.create_task(self._run_async(identity, spec))

    def _cancel_async(self, task_id) -> None:
        """Any thread: the task is cancelled on its own loop."""
        task = self._async_tasks.get(task_id)
        if task is not None:
            task.get_loop().call_soon_threadsafe(task.cancel)

    async def _run_async(self, identity, spec) -> None:
        semaphore = self._async_sem
        if spec.options and "concurrency_group" in spec.options:
            semaphore = self._group_sems.get(spec.options["concurrency_group"], semaphore)
        try:
            try:
                await semaphore.acquire()
            except asyncio.CancelledError:   # cancelled while waiting for a free slot
                self._reply(identity, spec, self._error_returns(
                    spec, exceptions.TaskCancelledError(spec.task_id.hex())))
                return
            try:
                await self._run_async_call(identity, spec)
            finally:
                semaphore.release()
        finally:
            tasks = self._async_tasks
            tasks.pop(spec.task_id, None)
            if (not tasks and self._spin_for_next_call is not None
                    and threading.get_ident() == self._main_thread):
                now = self._idle_since = time.monotonic()
                until = self.cw.loop.idle_spin_deadline(now)
                if until:
                    self._async_loop.call_soon(self._spin_for_next_call, until)

    async def _run_async_call(self, identity, spec) -> None:
        ctx = TaskContext(spec.task_id, spec.function_name, spec.actor_id, received=[], caller=identity)
        token = current_task.set(ctx)
        note_started(self.cw, spec, self.actor)
        try:
            returns, exiting = await self._invoke_async(spec)
            if self.exit_requested and not exiting and self.exit_requested_by == spec.task_id:
                returns, exiting = self.exit_after_caught_exit(spec)
        finally:
            current_task.reset(token)
        note_ended(self.cw, spec, returns)
        borrowed = self.cw.still_held_after_task(ctx, spec) if ctx.received else ()
        self._reply(identity, spec, returns, borrowed, ctx.returned_refs)
        if exiting:
            self.exit_now(0)

    async def _invoke_async(self, spec) -> tuple:
        try:
            method = actor_method(self.actor, spec.method_name)
            args, kwargs = self._args(spec)
            result = method(*args, **kwargs)
            if spec.options is not None and is_streaming(spec):
                return await self._stream_async(spec, result), False
            if inspect.isawaitable(result):
                result = await result
            return self._pack_returns(spec, result), False
        except (ActorExit, asyncio.CancelledError, Exception) as exc:
            return self._returns_for_exception(spec, exc)


def _run_loop_forever(loop) -> None:
    asyncio.set_event_loop(loop)
    loop.run_forever()
