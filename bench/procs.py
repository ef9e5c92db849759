"""Process cleanup for the harness: start a child so that it and everything it
starts can be ended for sure.

`ProcessTree.spawn` starts the child in a new session (so runtime daemons
share its process group and `killpg` reaches them) and tags its environment
with a unique token. Some descendants leave the group and get orphaned --
Ray's workers call setsid and are reparented to init when their raylet dies --
so at cleanup we also kill every live process whose environment carries the
token. Only processes descending from our own child carry it, so nothing else
is ever signalled.
"""

import os
import signal
import subprocess
import uuid
from typing import List, Optional

GRACEFUL_EXIT_S = 15.0  # time a child gets to shut its runtime down after SIGTERM
MARKER_VAR = "ZRAY_BENCH_TREE"  # inherited by descendants; holds ':'-joined tokens


def wait_quietly(process: subprocess.Popen, timeout_s: float) -> Optional[int]:
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None


def _marked_pids(token: str) -> List[int]:
    """Live processes (not zombies) whose environment carries `token`."""
    wanted = token.encode()
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                variables = environ.read().split(b"\0")
        except OSError:  # gone, or a zombie / foreign process we cannot read
            continue
        for variable in variables:
            if variable.startswith(MARKER_VAR.encode() + b"=") and wanted in variable.split(b"=", 1)[1].split(b":"):
                found.append(int(entry))
                break
    return found


class ProcessTree:
    """A child we started plus every process it started."""

    def __init__(self, process: subprocess.Popen, token: str):
        self.process = process
        self.token = token

    @classmethod
    def spawn(cls, command: List[str], env: Optional[dict] = None, **popen_kwargs) -> "ProcessTree":
        token = uuid.uuid4().hex
        env = dict(os.environ if env is None else env)
        # Keep outer tokens: a tree spawned inside another tree stays findable by both.
        outer = env.get(MARKER_VAR)
        env[MARKER_VAR] = f"{outer}:{token}" if outer else token
        process = subprocess.Popen(command, env=env, start_new_session=True, **popen_kwargs)
        return cls(process, token)

    def stop(self, graceful: bool) -> bool:
        """End the child and everything it started.

        Returns True if the child had exited but left live processes behind
        (e.g. a runtime whose shutdown leaks daemons or workers).
        """
        process = self.process
        try:
            if graceful and process.poll() is None:
                process.send_signal(signal.SIGTERM)  # the runner turns this into rt.shutdown()
                wait_quietly(process, GRACEFUL_EXIT_S)
        except KeyboardInterrupt:
            pass  # a second Ctrl-C only skips the graceful wait
        except ProcessLookupError:
            pass
        finally:
            leftovers = _marked_pids(self.token)
            leaked = process.poll() is not None and bool(leftovers)
            try:
                # The group id is the child's pid; it is not reused while any
                # member (even a zombie) exists, so this only reaches our processes.
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            for pid in leftovers:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            wait_quietly(process, 10.0)
        return leaked
