"""Socket construction and the small conventions every zray process shares.

* One zmq Context per process, created lazily and re-created after fork.
* LINGER 0 everywhere: a process that exits never blocks on unsent frames.
* HWM 0 (unbounded queues): zray's own flow control (leases, in-flight
  windows) bounds what is queued; a silent HWM drop would lose a task.
* ROUTER sockets set ROUTER_MANDATORY so a reply to a vanished peer raises
  (and is logged) instead of disappearing.
* ``recv_message`` turns a frame into a message or logs and drops it.
* ``send_frame`` / ``send_routed`` / ``recv_frames`` are the hot-path send
  and receive: pyzmq's Python-level wrappers (flag enums, type checks,
  getsockopt through the sugar layer) cost several times the libzmq call
  itself (measured: a ROUTER echo spends 13.5 us of Python per message
  through them, 5-6 us through these).
"""
from __future__ import annotations

import logging
import os
import socket as _socket

import zmq

from .messages import MalformedMessage, decode

log = logging.getLogger(__name__)

# libzmq calls without pyzmq's Python wrappers, with plain-int flags.
_send = zmq.backend.Socket.send
_recv = zmq.backend.Socket.recv
_get_option = zmq.backend.Socket.get
_SNDMORE = int(zmq.SNDMORE)
_RCVMORE = int(zmq.RCVMORE)

_context = None
_context_pid = None


def context() -> zmq.Context:
    global _context, _context_pid
    if _context is None or _context_pid != os.getpid():
        _context = zmq.Context(io_threads=1)
        _context_pid = os.getpid()
    return _context


def _configure(sock: zmq.Socket) -> zmq.Socket:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    return sock


def router(identity: bytes | None = None) -> zmq.Socket:
    sock = _configure(context().socket(zmq.ROUTER))
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    if identity:
        sock.setsockopt(zmq.ROUTING_ID, identity)
    return sock


def dealer(identity: bytes | None = None) -> zmq.Socket:
    sock = _configure(context().socket(zmq.DEALER))
    if identity:
        sock.setsockopt(zmq.ROUTING_ID, identity)
    return sock


def publisher() -> zmq.Socket:
    return _configure(context().socket(zmq.PUB))


def subscriber(topics=(b"",)) -> zmq.Socket:
    sock = _configure(context().socket(zmq.SUB))
    for topic in topics:
        sock.setsockopt(zmq.SUBSCRIBE, topic)
    return sock


def bind_tcp(sock: zmq.Socket, host: str, port: int = 0) -> str:
    """Bind on host:port (0 = any free port); returns the connectable endpoint."""
    if port:
        sock.bind(f"tcp://{host}:{port}")
        return f"tcp://{host}:{port}"
    chosen = sock.bind_to_random_port(f"tcp://{host}", min_port=20000, max_port=60000, max_tries=200)
    return f"tcp://{host}:{chosen}"


def bind_ipc(sock: zmq.Socket, path: str) -> str:
    endpoint = f"ipc://{path}"
    sock.bind(endpoint)
    return endpoint


def send_frame(sock: zmq.Socket, frame: bytes) -> None:
    """One single-frame message (DEALER, PUSH)."""
    _send(sock, frame, 0)


def send_routed(sock: zmq.Socket, identity: bytes, frame: bytes) -> None:
    """One frame to the peer ``identity`` of a ROUTER."""
    _send(sock, identity, _SNDMORE)
    _send(sock, frame, 0)


def recv_frames(sock: zmq.Socket, flags: int = 0) -> list:
    """Every frame of the next message, as bytes."""
    frames = [_recv(sock, flags)]
    while _get_option(sock, _RCVMORE):
        frames.append(_recv(sock, flags))
    return frames


def recv_message(sock: zmq.Socket, flags: int = 0):
    """One message from a DEALER/SUB-style socket, or None if malformed."""
    frame = sock.recv(flags, copy=True)
    try:
        return decode(frame)
    except MalformedMessage as exc:
        log.warning("dropped malformed message: %s", exc)
        return None


def node_ip_address() -> str:
    """Best guess at this host's address for other hosts to reach it."""
    try:
        return _socket.gethostbyname(_socket.gethostname())
    except OSError:
        return "127.0.0.1"
