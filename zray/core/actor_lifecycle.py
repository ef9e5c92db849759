"""How an actor's process leaves on purpose (mixin of Executor): a graceful
kill waits for its calls, and any intended exit (exit_actor, __ray_terminate__,
a graceful kill) runs the actor's __ray_shutdown__ and the atexit handlers
first, as in Ray."""
from __future__ import annotations

import asyncio
import inspect
import logging
import threading

from .. import exceptions

log = logging.getLogger(__name__)


class ActorLifecycle:
    def request_graceful_exit(self) -> bool:
        """A graceful kill (SIGTERM to an actor): leave once no call is queued
        or running; False while some is.  Loop lock held (a tick)."""
        if self.queue or self.running is not None:
            return False
        if self.mode == "async":
            if self._async_tasks:
                return False
            self.exiting = True
            self._async_loop.call_soon_threadsafe(self._async_loop.stop)
            return True
        self.exiting = True      # run_forever returns at its next turn
        return True

    def exit_after_caught_exit(self, spec) -> tuple:
        """(returns, exiting) of a call that called exit_actor() and caught its
        exception: the actor leaves anyway and the call fails as if it had not."""
        return self._error_returns(spec, exceptions.ActorDiedError(
            error_msg=exceptions.INTENDED_EXIT_MESSAGE)), True

    def run_exit_hooks(self) -> None:
        """Before an actor leaves on purpose (exit_actor, __ray_terminate__, a
        graceful kill): its threads' calls finish, then its __ray_shutdown__
        and the process's atexit handlers run, as in Ray.  A kill runs neither."""
        on_main = threading.get_ident() == self._main_thread
        if on_main:
            for pool in (self._pool, *self._group_pools.values()):
                if pool is not None:
                    pool.shutdown(wait=True)
            self._flush_outbox()
        actor = self.actor
        hook = getattr(type(actor), "__ray_shutdown__", None) if actor is not None else None
        if hook is not None:
            try:
                result = hook(actor)
                if inspect.isawaitable(result):
                    asyncio.new_event_loop().run_until_complete(result)
            except Exception:
                log.exception("__ray_shutdown__ of %s failed", type(actor).__name__)
        import atexit
        atexit._run_exitfuncs()

