"""IoLoop invariants on real zmq sockets in one process (io_loop.py):
a send must not hide input its socket already holds; a leader blocked on the
primary socket is woken by a thread that needs the lock; wake-up frames
never reach the ROUTER's handler."""
import os
import threading
import time

import pytest
import zmq

from zray.core.io_loop import IoLoop
from zray.sockets import transport

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def pair(tmp_path):
    """A ROUTER on ipc and a DEALER connected to it, both closed after."""
    router = transport.router()
    endpoint = transport.bind_ipc(router, str(tmp_path / "r.sock"))
    dealer = transport.dealer(b"peer")
    dealer.connect(endpoint)
    dealer.send(b"hello")                     # so the ROUTER knows the peer
    assert transport.recv_frames(router) == [b"peer", b"hello"]
    yield router, dealer
    dealer.close(0)
    router.close(0)


def _settle(sock, timeout=5.0):
    """Wait until ``sock`` holds input, without consuming it."""
    deadline = time.monotonic() + timeout
    while not sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
        assert time.monotonic() < deadline, "the message never arrived"
        time.sleep(0.001)


def test_a_send_does_not_hide_input_already_queued(pair):
    router, dealer = pair
    loop = IoLoop("test")
    got = []
    loop.add_socket(dealer, got.append)
    loop.lock.acquire()
    try:
        loop.poll_once(0)                     # the new socket's first check
        transport.send_routed(router, b"peer", b"reply")
        _settle(dealer)                       # queued; this EVENTS consumed the FD signal
        loop.send(dealer, b"request")         # as a caller would, right after
        start = time.monotonic()
        while not got and time.monotonic() - start < 5:
            loop.poll_once(5000)
        waited = time.monotonic() - start
    finally:
        loop.release()
        loop.close()
    assert got == [b"reply"]
    assert waited < 1.0, f"the reply waited {waited:.2f}s behind a consumed FD signal"


def test_a_thread_needing_the_lock_wakes_a_leader_blocked_on_the_primary_socket(pair, tmp_path):
    router, _dealer = pair
    loop = IoLoop("test")
    handled = []
    loop.add_socket(router, handled.append, multipart=True)
    loop.acquire()
    try:
        loop.set_primary(router, f"inproc://test-primary-{os.getpid()}")
    finally:
        loop.release()
    loop._next_tick = time.monotonic() + 3600   # no tick cuts the blocking recv short
    leader = threading.Thread(target=loop.wait_until,
                              args=(lambda: False, 3.0), kwargs={"idle": True}, daemon=True)
    leader.start()
    deadline = time.monotonic() + 5
    while not loop._primary_blocked:
        assert time.monotonic() < deadline, "the leader never blocked on its primary socket"
        time.sleep(0.001)
    start = time.monotonic()
    loop.acquire()                            # must not wait out the leader's 3 s recv
    took = time.monotonic() - start
    loop.release()
    loop._running = False
    assert took < 0.5, f"acquire waited {took * 1000:.0f} ms for the blocked leader"
    assert handled == [], f"wake-up frames reached the handler: {handled}"
    leader.join(timeout=10)
    loop.close()
