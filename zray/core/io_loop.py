"""The per-process progress engine: one lock, every socket, any thread drives.

Why not a dedicated IO thread?  Handing each call to another thread costs ~3x
a direct round trip on this machine (LIMITS.md), so the thread that waits
for a reply drives the sockets itself ("leader"), while:

* other threads that only need a result wait on a condition variable the
  leader notifies after every dispatch round ("followers");
* a thread that must *send* while a leader sits in ``poll`` writes a byte to
  the leader's wake pipe so the leader yields the lock quickly;
* a worker's main thread waiting for its next task blocks in a plain
  ``recv`` on its ROUTER (the "primary" socket) instead of polling every
  socket: libzmq's own blocking receive is the cheapest wake-up there is
  (a ROUTER echo: 17-19k msgs/s and 6 us of Python per message, against
  10-14k/s and 17-25 us through a poll over four sockets).  Threads that
  need the leader meanwhile wake it with a message on an inproc DEALER
  connected to that ROUTER; other sockets wait until the next message, the
  next wake or the next tick (<= 50 ms), which is fine for an idle worker;
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

from ..sockets import transport

log = logging.getLogger(__name__)

# Plain ints: `int & zmq.POLLIN` (an IntFlag) builds enum objects, measured
# as most of a spinning wait's time.
POLLIN = int(zmq.POLLIN)
_NOBLOCK = int(zmq.NOBLOCK)
_Again = zmq.Again
_EVENTS = int(zmq.EVENTS)
_get_option = zmq.backend.Socket.get   # skips pyzmq's Python-level option wrapper
_recv = zmq.backend.Socket.recv
_set_option = zmq.backend.Socket.set
_RCVTIMEO = int(zmq.RCVTIMEO)
# Routing id of the inproc DEALER that wakes a leader blocked on the primary socket.
WAKE_IDENTITY = b"\x00zray-wake"
_recv_frames = transport.recv_frames
BACKGROUND_TICK_S = 0.05
FOREGROUND_QUIET_S = 0.02
BACKGROUND_PARK_S = 1.0
# A caller waiting for a reply polls without blocking for up to this long
# when its recent waits were that short (see wait_until).
SPIN_MAX_S = 0.0003
# A worker waiting for its next call polls for it this long before blocking,
# while its recent waits were that short (calls arriving back to back): the
# blocking recv puts a ~40 us wake-up on the next call's critical path.
IDLE_SPIN_S = 0.0003


def _moving_average(average: float, sample: float) -> float:
    return 0.8 * average + 0.2 * sample


class IoLoop:
    def __init__(self, name: str = "io"):
        self.name = name
        self.lock = threading.Lock()
        self._handlers: dict = {}          # socket -> (handler, multipart)
        # The leader waits on every socket's ZMQ_FD with one poll(2) (see poll_once).
        self._fd_poll = select.poll()
        self._fd_sockets: dict = {}        # ZMQ_FD -> socket
        # Sockets that may hold input their FD no longer signals (see poll_once).
        self._check_all = True             # every socket
        self._sent: set = set()            # sockets sent on since their last check
        self._leader_wake_r, self._leader_wake_w = os.pipe()
        self._bg_wake_r, self._bg_wake_w = os.pipe()
        for fd in (self._leader_wake_r, self._leader_wake_w, self._bg_wake_r, self._bg_wake_w):
            os.set_blocking(fd, False)
        self._fd_poll.register(self._leader_wake_r, select.POLLIN)
        self._contenders = 0
        self._contenders_lock = threading.Lock()
        self._round_done = threading.Condition(threading.Lock())
        self._followers = 0
        self._sockets_version = 0
        self._tick_callbacks: list = []
        self._next_tick = 0.0
        self._recent_wait_s = 0.0          # moving average of spinning callers' waits
        self._recent_idle_s = 0.0          # moving average of a worker's waits for work
        self._running = False
        self._thread = None
        self._leading = 0              # threads polling as leader right now
        self._primary = None           # ROUTER an idle worker blocks on (set_primary)
        self._primary_waker = None     # inproc DEALER into it, used under _waker_lock
        self._waker_lock = threading.Lock()
        self._primary_blocked = False  # the leader sits in a blocking recv on _primary
        self._bg_parked = False        # the background thread waits for the leaders to leave
        self._bg_unpark = threading.Event()
        self._foreground_at = 0.0      # last time a caller thread used the loop

    # ---------------------------------------------------------- sockets ---
    def add_socket(self, sock, handler, multipart: bool = False) -> None:
        """Route messages of ``sock`` to ``handler(frames_or_frame)`` (lock held)."""
        self._handlers[sock] = (handler, multipart)
        fd = sock.getsockopt(zmq.FD)
        self._fd_sockets[fd] = sock
        self._fd_poll.register(fd, select.POLLIN)
        self._check_all = True
        self._sockets_version += 1
        self._wake(self._bg_wake_w)

    def remove_socket(self, sock) -> None:
        if self._handlers.pop(sock, None) is not None:
            for fd, known in list(self._fd_sockets.items()):
                if known is sock:
                    del self._fd_sockets[fd]
                    self._fd_poll.unregister(fd)
            self._sockets_version += 1
            self._wake(self._bg_wake_w)

    def set_primary(self, router, inproc_endpoint: str) -> None:
        """Let ``wait_until(..., idle=True)`` block on ``router`` (lock held).
        It also binds ``inproc_endpoint``, where the waker connects."""
        router.bind(inproc_endpoint)
        waker = transport.dealer(WAKE_IDENTITY)
        waker.connect(inproc_endpoint)
        self._primary_waker = waker
        self._primary = router

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
        self.wake_leader()
        self.lock.acquire()
        with self._contenders_lock:
            self._contenders -= 1

    def wake_leader(self) -> None:
        """Make the thread polling as leader return (any thread, no lock).

        Callers count themselves (_contenders / _followers) *before* this, and
        the leader sets _primary_blocked *before* checking those counts, so
        either it sees them or this sees it blocked (the GIL orders both)."""
        self._wake(self._leader_wake_w)
        if self._primary_blocked:
            with self._waker_lock:
                try:
                    self._primary_waker.send(b"", zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass   # closing down

    def send(self, sock, frame) -> None:
        """Send one frame on a socket of this loop (lock held).  Every send
        of a zray process goes through here or send_routed, so the loop knows
        which sockets a send may have left with unsignalled input."""
        transport.send_frame(sock, frame)
        self._sent.add(sock)

    def send_routed(self, router, identity: bytes, frame) -> None:
        """Send one frame to peer ``identity`` of a ROUTER (lock held)."""
        transport.send_routed(router, identity, frame)
        self._sent.add(router)

    def release(self) -> None:
        self.lock.release()
        self._notify_followers()

    def _notify_followers(self) -> None:
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
    def poll_once(self, timeout_ms) -> bool:
        """One poll round, draining every readable socket (lock held).

        ZMQ_FD is edge-like: it turns readable when a socket's state may have
        changed, and any EVENTS/recv/send on the socket consumes that.  Drains
        read until EVENTS says empty, so only a send can leave input behind
        unsignalled: a round first asks the sockets sent on since (``_sent``)
        for input, and otherwise waits with one poll(2) over all FDs and
        drains only the sockets whose FD fired.  Every tick asks all sockets
        (``_check_all``), a bound on any send that bypassed ``send``.
        zmq_poll instead checks every socket before and after each wait
        (more CPU per message, much of it on a reply's critical path).
        True if anything was handled."""
        if self._check_all or self._sent:
            if self._check_all:
                self._check_all = False
                self._sent.clear()
                check = list(self._handlers)
            else:
                check, self._sent = self._sent, set()
            if self._drain_ready(check):
                return True   # the caller's condition may hold now
        try:
            events = self._fd_poll.poll(timeout_ms)
        except InterruptedError:
            return True
        fd_sockets = self._fd_sockets
        for fd, _ in events:
            sock = fd_sockets.get(fd)
            if sock is not None:
                self._drain(sock)
            elif fd == self._leader_wake_r:
                try:
                    os.read(fd, 4096)
                except BlockingIOError:
                    pass
        return bool(events)

    def _wait_primary(self, timeout_ms) -> None:
        """One round of an idle worker's wait: anything already signalled on
        any socket first, else block on the primary socket (lock held)."""
        sock = self._primary
        self._sent.discard(sock)   # the blocking recv below sees its input anyway
        if self.poll_once(0):
            return
        self._primary_blocked = True
        try:
            if self._contenders or self._followers:
                return
            _set_option(sock, _RCVTIMEO, timeout_ms)
            frames = _recv_frames(sock, 0)
        except _Again:
            return
        except zmq.ZMQError as exc:
            log.warning("%s: recv failed on the primary socket: %s", self.name, exc)
            return
        finally:
            self._primary_blocked = False
        self._dispatch(self._handlers[sock][0], True, frames)

    def _drain(self, sock, known_ready: bool = False) -> None:
        """Read and handle every message ``sock`` holds (``known_ready``: its
        EVENTS just said POLLIN, so the first check is skipped)."""
        entry = self._handlers.get(sock)
        if entry is None:
            return
        handler, multipart = entry
        while True:
            try:
                # EVENTS before recv: cheaper than a zmq.Again per drain.
                if known_ready:
                    known_ready = False
                elif not _get_option(sock, _EVENTS) & POLLIN:
                    return
                frames = _recv_frames(sock, _NOBLOCK) if multipart else _recv(sock, _NOBLOCK)
            except _Again:
                return
            except zmq.ZMQError as exc:
                log.warning("%s: recv failed on %s: %s", self.name, sock, exc)
                return
            self._dispatch(handler, multipart, frames)
            if sock not in self._handlers:
                return

    def _dispatch(self, handler, multipart: bool, frames) -> None:
        if multipart and frames[0] == WAKE_IDENTITY:
            return   # a wake-up for a leader blocked on the primary socket
        try:
            handler(frames)
        except Exception:
            log.exception("%s: handler failed", self.name)

    def _drain_ready(self, sockets) -> bool:
        """Drain those of ``sockets`` that hold input (lock held); True if any did."""
        handled = False
        handlers = self._handlers
        for sock in sockets:
            if sock not in handlers:
                continue
            try:
                ready = _get_option(sock, _EVENTS) & POLLIN
            except zmq.ZMQError:
                continue
            if ready:
                self._drain(sock, known_ready=True)
                handled = True
        return handled

    def maybe_tick(self) -> None:
        """Run the tick callbacks if one is due (lock held)."""
        now = time.monotonic()
        if now < self._next_tick:
            return
        self._next_tick = now + BACKGROUND_TICK_S
        self._check_all = True
        for callback in self._tick_callbacks:
            try:
                callback()
            except Exception:
                log.exception("%s: tick callback failed", self.name)

    def drain_all(self) -> None:
        """Drain every socket that has input, without blocking (lock held)."""
        self._sent.clear()
        self._drain_ready(list(self._handlers))

    def idle_spin_deadline(self, now: float) -> float:
        """Until when a worker that just went idle at ``now`` polls for its
        next call before blocking (0.0: block at once)."""
        return now + IDLE_SPIN_S if self._recent_idle_s < IDLE_SPIN_S else 0.0

    def note_idle_wait(self, waited: float) -> None:
        """A worker's wait for work lasted ``waited`` seconds."""
        self._recent_idle_s = _moving_average(self._recent_idle_s, waited)

    def wait_until(self, predicate, timeout: float | None = None, spin: bool = False,
                   idle: bool = False) -> bool:
        """Drive (or follow) until ``predicate()`` is true; False on timeout.

        ``spin``: a caller waiting for a reply first polls without blocking
        for up to SPIN_MAX_S while its recent waits were shorter than that.
        Blocking costs a thread wake-up on the reply's arrival, which on this
        VM is a cross-core interrupt (~20-30 us of every hop): a bare zmq
        echo runs 7k/s blocking, 14-17k/s with the client spinning.  Each
        empty spin step yields the CPU (sched_yield) to whoever is queued.

        ``idle``: a worker's main thread waiting for work; it blocks on the
        primary socket (set_primary) when one is set, after spinning up to
        IDLE_SPIN_S while its recent waits for work were shorter than that."""
        primary = idle and self._primary is not None
        if predicate():
            return True
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        if spin:
            spin_until = start + SPIN_MAX_S if self._recent_wait_s < SPIN_MAX_S else 0.0
        else:
            spin_until = self.idle_spin_deadline(start) if primary else 0.0
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
                            if self.poll_once(0):
                                self._notify_followers()   # it may be their reply
                            else:
                                # The zmq IO thread that carries our request (or
                                # the process computing the reply) may be queued
                                # on this CPU, where the scheduler lets a running
                                # task finish its slice first: give it the CPU.
                                os.sched_yield()
                            continue
                        # Wake for the next tick too: timers must not wait on a long get.
                        wait_ms = max(1, int((self._next_tick - now) * 1000) + 1)
                        if deadline is not None:
                            remaining = deadline - now
                            if remaining <= 0:
                                return False
                            wait_ms = min(wait_ms, max(1, int(remaining * 1000) + 1))
                        if primary:
                            self._wait_primary(wait_ms)
                        else:
                            self.poll_once(wait_ms)
                        self.maybe_tick()
                        self._notify_followers()
                    else:
                        if spin:
                            self._recent_wait_s = _moving_average(
                                self._recent_wait_s, time.monotonic() - start)
                        elif primary:
                            self.note_idle_wait(time.monotonic() - start)
                        return True
                finally:
                    self._leading -= 1
                    self._foreground_at = time.monotonic()
                    self.release()
                    if self._bg_parked and not self._leading:
                        self._bg_unpark.set()
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
                        if self._primary_blocked:
                            self.wake_leader()
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
        self._bg_unpark.set()
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
                # Park until the last leader leaves (it sets the event if it
                # sees us parked; we re-check after saying so), instead of
                # waking every 20 ms for nothing while a worker sits idle.
                self._bg_parked = True
                if self._leading:
                    self._bg_unpark.wait(BACKGROUND_PARK_S)
                    self._bg_unpark.clear()
                self._bg_parked = False
                # A leader that just left is often back within microseconds
                # (a sync caller): wake at most every 20 ms, not per call.
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
        if self._primary_waker is not None:
            self._primary_waker.close(0)
        for fd in (self._leader_wake_r, self._leader_wake_w, self._bg_wake_r, self._bg_wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
