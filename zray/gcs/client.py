"""GcsClient: a small synchronous GCS client for tools, tests and simple callers.

Owns one DEALER connected to the GCS ROUTER.  Like every zmq socket it must
stay on the thread that made it: one client per thread.

    client = GcsClient("tcp://127.0.0.1:23456", timeout_s=10)
    client.call(GcsMethod.KV_PUT, "ns", b"k", b"v", True)   # -> True
    client.send(ReportResources(...))                      # one-way messages
    client.close()

``call`` raises GcsError (with the server's code and message) when the reply
has ok=False, and TimeoutError naming the method when no reply comes in time.
A reply that arrives after its call timed out is recognised by its request id
and dropped by the next call.
"""
from __future__ import annotations

import itertools
import time

import zmq

from zray.gcs.errors import GcsError
from zray.sockets import transport
from zray.sockets.messages import GcsMethod, GcsReply, GcsRequest, encode


class GcsClient:
    def __init__(self, address: str, timeout_s: float = 10.0):
        self.address = address
        self.timeout_s = timeout_s
        self._sock = transport.dealer()
        self._sock.connect(address)
        self._request_ids = itertools.count(1)

    def call(self, method: GcsMethod, *args, timeout_s: float | None = None):
        """Send one GcsRequest and wait for its reply's payload."""
        request_id = next(self._request_ids)
        self._sock.send(encode(GcsRequest(request_id, int(method), args)))
        limit = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + limit
        while True:
            remaining_ms = (deadline - time.monotonic()) * 1000
            if remaining_ms <= 0 or not self._sock.poll(remaining_ms, zmq.POLLIN):
                name = method.name if isinstance(method, GcsMethod) else repr(method)
                raise TimeoutError(f"GCS at {self.address} did not answer {name} within {limit}s")
            reply = transport.recv_message(self._sock, zmq.NOBLOCK)
            if type(reply) is GcsReply and reply.request_id == request_id:
                break
        if not reply.ok:
            code, message = reply.payload
            raise GcsError(code, message)
        return reply.payload

    def send(self, message) -> None:
        """A one-way message to the GCS (ReportResources, WorkerDied)."""
        self._sock.send(encode(message))

    def close(self) -> None:
        self._sock.close(linger=0)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
