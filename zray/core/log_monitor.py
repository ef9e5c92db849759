"""Forwards what tasks print to the driver's console, as Ray does.

Workers write user stdout/stderr to ``<session>/logs/worker-<id>.out``; the
driver (same host) tails those files from a daemon thread and prints new
lines prefixed with the worker's pid.  zray's own logging goes to separate
``worker-<id>.log`` files and is not forwarded.
"""
from __future__ import annotations

import os
import sys
import threading

POLL_INTERVAL_S = 0.1


class LogMonitor:
    def __init__(self, logs_dir: str, out=None):
        self.logs_dir = logs_dir
        self.out = out
        self._offsets: dict = {}        # file name -> bytes consumed
        self._partial: dict = {}        # file name -> unterminated tail
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zray-log-monitor", daemon=True)

    def start(self) -> "LogMonitor":
        # Only what is printed from now on: skip output of earlier drivers.
        for name in self._worker_files():
            self._offsets[name] = os.path.getsize(os.path.join(self.logs_dir, name))
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=1)
        self.poll_once()

    def _worker_files(self):
        try:
            return [n for n in os.listdir(self.logs_dir) if n.startswith("worker-") and n.endswith(".out")]
        except OSError:
            return []

    def _run(self) -> None:
        while not self._stop.wait(POLL_INTERVAL_S):
            self.poll_once()

    def poll_once(self) -> None:
        out = self.out or sys.stdout
        for name in self._worker_files():
            path = os.path.join(self.logs_dir, name)
            offset = self._offsets.get(name, 0)
            try:
                size = os.path.getsize(path)
                if size <= offset:
                    continue
                with open(path, "rb") as f:
                    f.seek(offset)
                    data = f.read(size - offset)
            except OSError:
                continue
            self._offsets[name] = offset + len(data)
            text = self._partial.pop(name, "") + data.decode("utf-8", "replace")
            lines = text.split("\n")
            if lines[-1]:
                self._partial[name] = lines[-1]
            pid = name[len("worker-"):-len(".out")].split("-")[0]
            try:
                for line in lines[:-1]:
                    out.write(f"(pid={pid}) {line}\n")
                out.flush()
            except (OSError, ValueError):
                return
