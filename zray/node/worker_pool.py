"""The raylet's worker pool: fork-server client and per-worker state.

Workers start IDLE after registering, become LEASED (to an owner) or ACTOR
(dedicated for life), and are reported DEAD when the fork server reaps them.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

from .. import ids, runtime_env

log = logging.getLogger(__name__)

STARTING, IDLE, LEASED, ACTOR, EXITING, DEAD = "STARTING", "IDLE", "LEASED", "ACTOR", "EXITING", "DEAD"


class WorkerInfo:
    __slots__ = ("worker_id", "pid", "endpoint", "state", "lease", "actor_id", "blocked",
                 "idle_since", "started_at", "env", "gpu")

    def __init__(self, worker_id, env=()):
        self.worker_id = worker_id
        self.env = env                  # runtime_env env_vars it was started with
        self.pid = None
        self.endpoint = None
        self.state = STARTING
        self.lease = None
        self.actor_id = None
        self.blocked = False
        self.idle_since = time.monotonic()
        self.started_at = time.monotonic()
        # Whether its first lease used GPUs (None: not leased yet).  As in
        # Ray, a worker serves only that kind from then on, so device state a
        # GPU task set up never leaks into CPU tasks and the other way round.
        self.gpu = None


class WorkerPool:
    def __init__(self, session_dir: str, raylet_endpoint: str):
        self.workers: dict = {}        # worker_id -> WorkerInfo
        self.by_pid: dict = {}
        self.idle: list = []           # worker ids, most recently idle last
        self._buffer = b""
        log_path = os.path.join(session_dir, "logs", "forkserver.log")
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zray.node.forkserver", session_dir, raylet_endpoint],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, close_fds=True)
        self.stdout_fd = self.proc.stdout.fileno()
        os.set_blocking(self.stdout_fd, False)

    def starting(self, env=()) -> int:
        """Workers of this runtime env still starting."""
        return sum(1 for w in self.workers.values() if w.state == STARTING and w.env == env)

    def start_worker(self, env=()) -> WorkerInfo:
        worker_id = ids.random_unique_id()
        info = WorkerInfo(worker_id, env)
        self.workers[worker_id] = info
        line = f"spawn {worker_id.hex()}"
        if env:
            line += " " + runtime_env.encode_for_worker(env).encode().hex()
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        return info

    def read_events(self) -> list:
        """("exit", pid, code) events from the fork server (pids are recorded)."""
        try:
            chunk = os.read(self.stdout_fd, 65536)
        except BlockingIOError:
            return []
        if not chunk:
            return [("forkserver_died", None, None)]
        self._buffer += chunk
        events = []
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            parts = line.decode().split()
            if len(parts) == 3 and parts[0] == "pid":
                info = self.workers.get(bytes.fromhex(parts[1]))
                if info is not None:
                    info.pid = int(parts[2])
                    self.by_pid[info.pid] = info
            elif len(parts) == 3 and parts[0] == "exit":
                events.append(("exit", int(parts[1]), int(parts[2])))
        return events

    def mark_idle(self, info: WorkerInfo) -> None:
        info.state = IDLE
        info.lease = None
        info.blocked = False
        info.idle_since = time.monotonic()
        self.idle.append(info.worker_id)

    def pop_idle(self, env=(), gpu: bool = False):
        """The most recently idle worker of this runtime env that has served
        only ``gpu`` leases (or none yet), or None."""
        idle = self.idle
        for position in range(len(idle) - 1, -1, -1):
            info = self.workers.get(idle[position])
            if info is None or info.state != IDLE:
                del idle[position]          # stale entry
                continue
            if info.env == env and (info.gpu is None or info.gpu == gpu):
                del idle[position]
                info.gpu = gpu
                return info
        return None

    def kill(self, info: WorkerInfo, sig=signal.SIGKILL) -> None:
        if info.pid is not None:
            try:
                os.kill(info.pid, sig)
            except ProcessLookupError:
                pass

    def remove(self, info: WorkerInfo) -> None:
        info.state = DEAD
        self.workers.pop(info.worker_id, None)
        if info.pid is not None:
            self.by_pid.pop(info.pid, None)

    def shutdown(self) -> None:
        for info in list(self.workers.values()):
            self.kill(info)
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()
