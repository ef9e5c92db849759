"""Supervises the per-module child process (`python -m zray_bench.runner`).

Owns spawning, the progress pipe, deadlines and cleanup:
  * progress events arrive as JSON lines on a dedicated pipe; the child's own
    stdout/stderr (runtime log noise) go to a log file whose tail is quoted
    when something fails;
  * every wait is bounded: no event for `stall_timeout_s`, or the whole module
    exceeding `run_timeout_s`, kills the child;
  * a workload that hangs or crashes the child becomes an error row, and a new
    child resumes with the next workload (`--start-at`);
  * the child is a `procs.ProcessTree`: it and every process it starts are
    killed at the end -- nothing outlives a run.
"""

import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from typing import Callable, List, Optional

from .procs import ProcessTree, wait_quietly
from .workloads import WORKLOADS


class ModuleRun:
    """Runs all selected workloads of one module, across child restarts if needed."""

    def __init__(self, module: str, quick: bool, only: Optional[str],
                 on_event: Callable[[str, dict], None],
                 stall_timeout_s: float, run_timeout_s: float):
        self.module = module
        self.quick = quick
        self.only = only
        self.on_event = on_event  # (module, event) -> None, drives the live display
        self.stall_timeout_s = stall_timeout_s
        self.run_timeout_s = run_timeout_s
        self.rows: List[dict] = []
        self.version: Optional[str] = None
        self.total: Optional[int] = None
        self.fatal: Optional[str] = None  # set when the module could not run at all
        self._process: Optional[subprocess.Popen] = None  # the live child, if any
        self._tree: Optional[ProcessTree] = None
        self._phase: Optional[str] = None  # what the child does between workloads (init, shutdown)

    # ------------------------------------------------------------ public

    def run(self) -> None:
        deadline = time.monotonic() + self.run_timeout_s
        start_at = 0
        while True:
            outcome = self._run_child(start_at, deadline)
            if outcome is None:
                return
            # The child died or hung inside workload `outcome` (1-based): record
            # it and resume after it, unless nothing is left or time is up.
            index, name, error = outcome
            self._add_row(_error_row(name, error), index)
            start_at = index
            if self.total is None or start_at >= self.total:
                return
            if time.monotonic() >= deadline:
                self.fatal = f"run deadline of {self.run_timeout_s:.0f}s exceeded"
                return

    # ---------------------------------------------------------- internals

    def _add_row(self, row: dict, index: int) -> None:
        self.rows.append(row)
        self.on_event(self.module, {"event": "row", "index": index, "total": self.total, "row": row})

    def _command(self, start_at: int, progress_fd: int) -> List[str]:
        command = [sys.executable, "-m", f"{__package__}.runner", "--module", self.module,
                   "--progress-fd", str(progress_fd), "--start-at", str(start_at)]
        if self.quick:
            command.append("--quick")
        if self.only:
            command += ["--only", self.only]
        return command

    def _run_child(self, start_at: int, deadline: float):
        """Run one child; return None when finished, or (index, name, error) on a hang/crash."""
        read_fd, write_fd = os.pipe()
        env = dict(os.environ)
        # A set RAY_ADDRESS would make ray.init() join an existing cluster
        # instead of starting the fresh local one we mean to measure.
        env.pop("RAY_ADDRESS", None)
        with tempfile.TemporaryFile(mode="w+", errors="replace", prefix="zray-bench-") as log:
            try:
                self._tree = ProcessTree.spawn(
                    self._command(start_at, write_fd), env=env, pass_fds=(write_fd,),
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
                self._process = self._tree.process
            finally:
                os.close(write_fd)  # the child holds its copy; EOF then means it exited
            try:
                return self._pump(read_fd, deadline, log)
            finally:
                os.close(read_fd)
                if self._tree.stop(graceful=True):
                    self.on_event(self.module, {"event": "strays"})
                self._process = self._tree = None

    def _pump(self, read_fd: int, deadline: float, log):
        current = None  # (index, name) of the workload in progress
        finished_rows = False
        buffer = b""
        last_event = time.monotonic()
        with selectors.DefaultSelector() as selector:
            selector.register(read_fd, selectors.EVENT_READ)
            while True:
                now = time.monotonic()
                # Once all rows are in, only shutdown remains: do not wait long.
                stall_limit = 60.0 if finished_rows else self.stall_timeout_s
                if now - last_event > stall_limit or now > deadline:
                    reason = "no progress" if now <= deadline else "module deadline"
                    if current is None:
                        if not finished_rows:
                            self.fatal = f"child timed out ({reason}) during {self._phase or 'startup'}"
                        return None
                    return (*current, f"timed out after {now - last_event:.0f}s ({reason})")
                exited = self._process.poll() is not None
                # After exit, drain what is buffered without blocking: processes
                # the child forked may still hold the pipe open, so EOF may never come.
                ready = selector.select(timeout=0 if exited else 0.5)
                chunk = os.read(read_fd, 65536) if ready else b""
                if not chunk:
                    if exited or ready:  # drained after exit, or EOF
                        break
                    self.on_event(self.module, {"event": "tick"})
                    continue
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    event = _parse(line)
                    if event is None:
                        continue
                    last_event = time.monotonic()
                    current, finished_rows = self._handle(event, current, finished_rows)

        code = wait_quietly(self._process, 30.0)
        if current is not None:
            return (*current, f"child exited with code {code}; its last output:\n{_tail(log)}")
        if self.fatal is None and not finished_rows and self.total != 0:
            self.fatal = f"child exited with code {code} during {self._phase or 'startup'}; its last output:\n{_tail(log)}"
        return None

    def _handle(self, event: dict, current, finished_rows):
        kind = event.get("event")
        if kind == "meta":
            self.version, self.total = event.get("version"), event.get("total")
        elif kind == "fatal":
            self.fatal = event.get("error")
        elif kind == "phase":
            self._phase = event.get("what")
        elif kind == "start":
            current = (event["index"], event["workload"])
            self._phase = None
        elif kind == "row":
            self.rows.append(event["row"])
            current = None
            finished_rows = event["index"] >= event["total"]
        self.on_event(self.module, event)
        return current, finished_rows


def _error_row(name: str, error: str) -> dict:
    workload = next((w for w in WORKLOADS if w.name == name), None)
    return {"workload": name, "unit": workload.unit if workload else None,
            "higher_is_better": workload.higher_is_better if workload else True,
            "mean": None, "sd": None, "error": error, "traceback": None, "elapsed_s": None}


def _parse(line: bytes) -> Optional[dict]:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def _tail(log, lines: int = 6) -> str:
    log.flush()
    log.seek(0)
    text = log.read().strip().splitlines()
    return "\n".join(text[-lines:]) or "(no output)"

