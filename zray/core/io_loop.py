"""The per-process progress engine: one lock, every socket, any thread drives.

Why not a dedicated IO thread?  Handing each call to another thread costs ~3x
a direct round trip on this machine (LIMITS.md), so the thread that waits
for a reply drives the sockets itself ("leader"), while:

* other threads that only need a result wait on a condition variable the
  leader notifies after every dispatch round ("followers");
* a thread that must *send* while a leader sits in ``poll`` writes a byte to
  the leader's wake pipe so the leader yields the lock quickly;
* a background thread watches every socket's edge-triggered ZMQ_FD with
  ``select.poll`` *without* holding the lock, and drains them when nobody
  else is driving, so replies, owner requests and timers are served while
  user code runs.  Rule that keeps this correct: whoever holds the lock
  drains every readable socket until EAGAIN before releasing it (an
  edge-triggered FD does not fire again for messages already queued).

All socket access happens with ``lock`` held (zmq sockets may move between
threads behind a full memory barrier, which the lock provides).
"""
from __future__ import annotations

import logging
import os
import select
import threading
import time

import zmq

log = logging.getLogger(__name__)

# Plain ints: `int & zmq.POLLIN` (an IntFlag) builds enum objects, measured
# as most of a spinning wait's time.
POLLIN = int(zmq.POLLIN)
_NOBLOCK = int(zmq.NOBLOCK)
_Again = zmq.Again
_EVENTS = int(zmq.EVENTS)
_get_option = zmq.backend.Socket.get   # skips pyzmq's Python-level option wrapper
BACKGROUND_TICK_S = 0.05
FOREGROUND_QUIET_S = 0.02
# A caller waiting for a reply polls without blocking for up to this long
# when its recent waits were that short (see wait_until).
SPIN_MAX_S = 0.0003


class IoLoop:
    def __init__(self, name: str = "io"):
        self.name = name
        self.lock = threading.Lock()
        self._handlers: dict = {}          # socket -> (handler, multipart)
        self._poller = zmq.Poller()
        self._leader_wake_r, self._leader_wake_w = os.pipe()
        self._bg_wake_r, self._bg_wake_w = os.pipe()
        for fd in (self._leader_wake_r, self._leader_wake_w, self._bg_wake_r, self._bg_wake_w):
            os.set_blocking(fd, False)
        self._poller.register(self._leader_wake_r, POLLIN)
        self._contenders = 0
        self._contenders_lock = threading.Lock()
        self._round_done = threading.Condition(threading.Lock())
        self._followers = 0
        self._sockets_version = 0
        self._tick_callbacks: list = []
        self._next_tick = 0.0
        self._recent_wait_s = 0.0          # moving average of spinning callers' waits
        self._running = False
        self._thread = None
        self._leading = 0              # threads polling as leader right now
        self._foreground_at = 0.0      # last time a caller thread used the loop

    # ---------------------------------------------------------- sockets ---
    def add_socket(self, sock, handler, multipart: bool = False) -> None:
        """Route messages of ``sock`` to ``handler(frames_or_frame)`` (lock held)."""
        self._handlers[sock] = (handler, multipart)
        self._poller.register(sock, POLLIN)
        self._sockets_version += 1
        self._wake(self._bg_wake_w)

    def remove_socket(self, sock) -> None:
        if self._handlers.pop(sock, None) is not None:
            self._poller.unregister(sock)
            self._sockets_version += 1
            self._wake(self._bg_wake_w)

    def add_tick(self, callback) -> None:
        """``callback()`` runs with the lock held every ~50 ms (background)."""
        self._tick_callbacks.append(callback)

    # ----------------------------------------------------------- locking ---
    def acquire(self) -> None:
        """Take the lock to send; a leader blocked in poll is woken to yield."""
        if self.lock.acquire(False):
            return
        with self._contenders_lock:
            self._contenders += 1
        self._wake(self._leader_wake_w)
        self.lock.acquire()
        with self._contenders_lock:
            self._contenders -= 1

    def wake_leader(self) -> None:
        """Make the thread polling as leader return (any thread, no lock)."""
        self._wake(self._leader_wake_w)

    def release(self) -> None:
        self.lock.release()
        if self._followers:
            with self._round_done:
                self._round_done.notify_all()

    @staticmethod
    def _wake(fd) -> None:
        try:
            os.write(fd, b"x")
        except BlockingIOError:
            pass  # pipe already full of wake-ups: the reader will wake anyway

    # ----------------------------------------------------------- driving ---
    def poll_once(self, timeout_ms) -> None:
        """One poll round, draining every readable socket (lock held)."""
        for sock, _ in self._poller.poll(timeout_ms):
            if sock == self._leader_wake_r:
                try:
                    os.read(self._leader_wake_r, 4096)
                except BlockingIOError:
                    pass
            else:
                self._drain(sock)

    def _drain(self, sock) -> None:
        entry = self._handlers.get(sock)
        if entry is None:
            return
        handler, multipart = entry
        recv = sock.recv_multipart if multipart else sock.recv
        while True:
            try:
                # EVENTS before recv: cheaper than a zmq.Again per drain.
                if not _get_option(sock, _EVENTS) & POLLIN:
                    return
                frames = recv(_NOBLOCK)
            except _Again:
                return
            except zmq.ZMQError as exc:
                log.warning("%s: recv failed on %s: %s", self.name, sock, exc)
                return
            try:
                handler(frames)
            except Exception:
                log.exception("%s: handler failed", self.name)
            if sock not in self._handlers:
                return

    def maybe_tick(self) -> None:
        """Run the tick callbacks if one is due (lock held)."""
        now = time.monotonic()
        if now < self._next_tick:
            return
        self._next_tick = now + BACKGROUND_TICK_S
        for callback in self._tick_callbacks:
            try:
                callback()
            except Exception:
                log.exception("%s: tick callback failed", self.name)

    def drain_all(self) -> None:
        """Drain every socket that has input, without blocking (lock held)."""
        for sock in list(self._handlers):
            try:
                if _get_option(sock, _EVENTS) & POLLIN:
                    self._drain(sock)
            except zmq.ZMQError:
                continue

    def wait_until(self, predicate, timeout: float | None = None, spin: bool = False) -> bool:
        """Drive (or follow) until ``predicate()`` is true; False on timeout.

        ``spin``: a caller waiting for a reply first polls without blocking
        for up to SPIN_MAX_S while its recent waits were shorter than that.
        Blocking costs a thread wake-up on the reply's arrival, which on this
        VM is a cross-core interrupt (~20-30 us of every hop): a bare zmq
        echo runs 7k/s blocking, 14-17k/s with the client spinning.  Only
        callers spin (a worker waiting for work never does), so the other
        core stays free for the process that computes the reply."""
        if predicate():
            return True
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        spin_until = start + SPIN_MAX_S if spin and self._recent_wait_s < SPIN_MAX_S else 0.0
        if deadline is not None and spin_until > deadline:
            spin_until = deadline
        while True:
            if self.lock.acquire(False):
                self._leading += 1
                try:
                    while not predicate():
                        if self._contenders:
                            break
                        now = time.monotonic()
                        if now < spin_until:
                            self.poll_once(0)   # one zmq_poll: cheaper than EVENTS per socket
                            continue
                        # Wake for the next tick too: timers must not wait on a long get.
                        wait_ms = max(1, int((self._next_tick - now) * 1000) + 1)
                        if deadline is not None:
                            remaining = deadline - now
                            if remaining <= 0:
                                return False
                            wait_ms = min(wait_ms, max(1, int(remaining * 1000) + 1))
                        self.poll_once(wait_ms)
                        self.maybe_tick()
                        if self._followers:
                            with self._round_done:
                                self._round_done.notify_all()
                    else:
                        if spin:
                            waited = time.monotonic() - start
                            self._recent_wait_s = 0.8 * self._recent_wait_s + 0.2 * waited
                        return True
                finally:
                    self._leading -= 1
                    self._foreground_at = time.monotonic()
                    self.release()
                time.sleep(0)  # let the contender that made us yield take the lock
            else:
                if predicate():
                    return True
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return predicate()
                with self._round_done:
                    self._followers += 1
                    try:
                        self._round_done.wait(0.02 if remaining is None else min(0.02, remaining))
                    finally:
                        self._followers -= 1
            if predicate():
                return True

    # -------------------------------------------------------- background ---
    def start_background(self) -> None:
        self._running = True
        self._thread = threading.Thread(target=self._background, name=f"zray-{self.name}",
                                        daemon=True)
        self._thread.start()

    def stop_background(self) -> None:
        self._running = False
        self._wake(self._bg_wake_w)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)

    def _background(self) -> None:
        poller = None
        version = -1
        next_tick = time.monotonic()
        while self._running:
            if version != self._sockets_version:
                self.lock.acquire()
                try:
                    version = self._sockets_version
                    poller = select.poll()
                    poller.register(self._bg_wake_r, select.POLLIN)
                    for sock in self._handlers:
                        try:
                            poller.register(sock.getsockopt(zmq.FD), select.POLLIN)
                        except zmq.ZMQError:
                            pass
                finally:
                    self.lock.release()
            # A caller thread that is driving (or just drove) drains every
            # socket itself; waking on its messages would only cost it the GIL
            # and a cross-core wake-up.  So while the foreground is busy, sleep
            # without watching the sockets (an undrained ZMQ_FD stays readable).
            if self._leading:
                time.sleep(FOREGROUND_QUIET_S)
                continue
            quiet_for = time.monotonic() - self._foreground_at
            if quiet_for < FOREGROUND_QUIET_S:
                time.sleep(FOREGROUND_QUIET_S - quiet_for)
                continue
            timeout_ms = max(0, int((next_tick - time.monotonic()) * 1000))
            try:
                ready = poller.poll(timeout_ms)
            except InterruptedError:
                ready = []
            if not self._running:
                return
            if any(fd == self._bg_wake_r for fd, _ in ready):
                try:
                    os.read(self._bg_wake_r, 4096)
                except BlockingIOError:
                    pass
            if self._leading:
                continue
            self.lock.acquire()
            try:
                self.drain_all()
                self.maybe_tick()
                next_tick = self._next_tick
            finally:
                self.release()

    def close(self) -> None:
        self.stop_background()
        for fd in (self._leader_wake_r, self._leader_wake_w, self._bg_wake_r, self._bg_wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
