"""Entry point of a worker process (called in a child of the fork server)."""
from __future__ import annotations

import logging
import os
import signal
import sys

from . import process_state
from .core_worker import CoreWorker
from .executor import EXIT_FLUSH_MS, Executor, process_exit_code

log = logging.getLogger(__name__)


def _retire_on_sigterm(cw) -> None:
    """SIGTERM is the raylet's idle-worker reaper, or a graceful kill of an
    actor.  An idle worker does not leave while it owns objects or actors
    (like Ray's: their borrowers would get OwnerDiedError): it exits once it
    owns nothing, and the raylet no longer leases it meanwhile.  An actor
    leaves once its calls are done (run_exit_hooks then runs its
    __ray_shutdown__)."""
    asked = []
    signal.signal(signal.SIGTERM, lambda signum, frame: asked.append(signum))

    def retire_when_unneeded():   # a tick: the loop lock is held
        executor = cw.executor
        # exit_actor() from a thread of the actor's own that no call waits on
        # (a call that exits, or an async actor's task, is handled where it ran).
        if not asked and not executor.exit_requested and not executor.retiring:
            return
        if executor.actor is not None:
            if executor.request_graceful_exit():
                cw.loop.wake_leader()
            return
        if executor.queue or executor.running is not None:
            return
        cw.refs.apply_ref_ops()
        if any(entry.owned for entry in cw.refs.objects.values()):
            return
        executor.exiting = True   # run_forever returns at its next turn
        cw.loop.wake_leader()
    cw.loop.add_tick(retire_when_unneeded)


def run(session_dir: str, raylet_endpoint: str, worker_id: bytes) -> int:
    logs = os.path.join(session_dir, "logs")
    # User prints (fd 1/2) go to worker-<pid>.out, which the driver forwards;
    # zray's own logging goes to worker-<pid>.log.
    out = os.open(os.path.join(logs, f"worker-{os.getpid()}.out"),
                  os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    logging.basicConfig(level=logging.INFO, force=True,
                        filename=os.path.join(logs, f"worker-{os.getpid()}.log"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parent = os.getppid()
    cw = CoreWorker(is_driver=False, raylet_endpoint=raylet_endpoint, session_dir=session_dir,
                    job_id=b"\0\0\0\0", worker_id=worker_id)
    process_state.worker = cw
    cw.executor = Executor(cw)
    cw.loop.acquire()
    try:
        cw.loop.set_primary(cw.router, f"inproc://zray-primary-{worker_id.hex()}")
    finally:
        cw.loop.release()

    def watch_parent():
        if os.getppid() != parent:
            log.warning("fork server died: exiting")
            os._exit(1)
    cw.loop.add_tick(watch_parent)
    _retire_on_sigterm(cw)
    cw.connect()
    code = cw.executor.run_forever()
    try:
        if code == 0 and cw.actor_id is not None:   # (actor is None if __init__ exited)
            cw.executor.run_exit_hooks()
        cw.shutdown(linger_ms=EXIT_FLUSH_MS)
    finally:
        os._exit(process_exit_code(code))
