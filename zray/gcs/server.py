"""The GCS process: the sockets and the one IO loop around GcsService.

    python -m zray.gcs.server --session-dir DIR --host 127.0.0.1 --port 0 \\
        --ready-file PATH [--storage-dir DIR] [--watch-pid PID] [--node-timeout-s 10]

Owns, all from the one thread that runs ``GcsServer.run``:

* ROUTER (requests: GcsRequest -> GcsReply; one-way ReportResources, WorkerDied)
* PUB (NodeChanged on NODE_TOPIC, ActorChanged on actor_topic(id), ResourceView
  on RESOURCE_TOPIC at most every RESOURCE_VIEW_PERIOD_S, only when changed)
* one DEALER per alive raylet (RequestWorkerLease / CancelLeaseRequest /
  ReturnWorker / KillWorker out; LeaseGranted / LeaseFailed in)
* one DEALER per worker running an actor's creation task (PushTask out,
  TaskReply in), closed once the creation task is settled or abandoned
* the LMDB tables (write-through; ``checkpoint`` every CHECKPOINT_PERIOD_S)

Decisions and storage live in GcsService (no sockets, no clock); this module
does the I/O and carries out the actions it returns.
Once bound it writes the ready file atomically: JSON {"gcs_address",
"pub_address", "pid"}.  Logs go to DIR/logs/gcs.log.  Malformed frames are
logged and dropped; a bad request gets GcsReply(ok=False, (code, message)).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Optional

import zmq

from zray.gcs import actor_events as ae
from zray.gcs import placement_groups as pgm
from zray.gcs.service import ConnectRaylet, DisconnectRaylet, GcsService, Publish
from zray.gcs.tables import GcsTables
from zray.pids import pid_alive
from zray.sockets import messages as msg
from zray.sockets import transport

log = logging.getLogger("zray.gcs")

TICK_S = 0.1                       # timers: health check, lease retries, pid watch
CHECKPOINT_PERIOD_S = 1.0
MAX_MESSAGES_PER_WAKEUP = 1000     # per socket, so one chatty peer cannot starve the rest


@dataclass(frozen=True)
class GcsConfig:
    session_dir: str
    host: str = "127.0.0.1"
    port: int = 0
    ready_file: Optional[str] = None
    storage_dir: Optional[str] = None     # default: session_dir
    watch_pid: Optional[int] = None
    node_timeout_s: float = 10.0


class GcsServer:
    def __init__(self, config: GcsConfig):
        self.config = config
        self._stopping = False
        self._tables = GcsTables(config.storage_dir or config.session_dir)
        self._service = GcsService(self._tables, config.node_timeout_s)
        self._poller = zmq.Poller()
        self._router = transport.router()
        self._pub = transport.publisher()
        self._raylets: dict[bytes, tuple] = {}             # node_id -> (DEALER, endpoint)
        self._workers: dict[str, tuple] = {}               # endpoint -> (DEALER, actor_id)
        self._peer_of: dict[zmq.Socket, tuple] = {}        # socket -> ("raylet", id) | ("worker", ep)
        self._last_checkpoint = 0.0
        self.gcs_address = self.pub_address = ""

    # ------------------------------------------------------------- startup ---
    def start(self) -> None:
        """Bind, reload the tables, then announce readiness."""
        self.gcs_address = transport.bind_tcp(self._router, self.config.host, self.config.port)
        self.pub_address = transport.bind_tcp(self._pub, self.config.host, 0)
        self._poller.register(self._router, zmq.POLLIN)
        self._execute(self._service.restore(time.monotonic()))
        # Nodes that join by GCS address alone learn the broadcast address here.
        self._tables.kv_put("cluster", b"pub_address", self.pub_address.encode(), True)
        log.info("GCS serving on %s (pub %s), storage %s",
                 self.gcs_address, self.pub_address, self._tables.path)
        if self.config.ready_file:
            _write_atomically(self.config.ready_file, json.dumps({
                "gcs_address": self.gcs_address, "pub_address": self.pub_address,
                "pid": os.getpid()}))

    def stop(self, *_signal_args) -> None:
        """Ask the loop to exit at its next wakeup (safe from a signal handler)."""
        self._stopping = True

    def run(self) -> None:
        next_tick = time.monotonic()
        while not self._stopping:
            timeout_ms = max(0.0, next_tick - time.monotonic()) * 1000
            for sock, _ in self._poller.poll(timeout_ms):
                self._drain(sock)
            now = time.monotonic()
            if now >= next_tick:
                self._on_tick(now)
                next_tick = now + TICK_S
        self.close()

    def close(self) -> None:
        for sock in [self._router, self._pub, *self._peer_of]:
            sock.close(linger=0)
        self._peer_of.clear()
        self._tables.close()
        log.info("GCS stopped")

    # ------------------------------------------------------------- receive ---
    def _drain(self, sock: zmq.Socket) -> None:
        for _ in range(MAX_MESSAGES_PER_WAKEUP):
            if sock.closed:       # closed by an action while draining
                return
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                if sock is self._router:
                    self._on_router_frames(frames)
                else:
                    self._on_peer_frames(self._peer_of.get(sock), frames)
            except Exception:     # a GCS bug must not take the cluster down
                log.exception("error handling a message")

    def _decode(self, frame, source: str):
        try:
            return msg.decode(frame)
        except msg.MalformedMessage as exc:
            log.warning("dropped malformed message from %s: %s", source, exc)
            return None

    def _on_router_frames(self, frames: list) -> None:
        if len(frames) != 2:
            log.warning("dropped a %d-frame message on the request socket", len(frames))
            return
        identity, frame = frames
        message = self._decode(frame, f"client {identity.hex()}")
        kind = type(message)
        now = time.monotonic()
        if kind is msg.GcsRequest:
            self._execute(self._service.request((identity, message.request_id), message.method,
                                                message.args, now))
        elif kind is msg.ReportResources:
            self._execute(self._service.report_resources(message, now))
        elif kind is msg.WorkerDied:
            self._execute(self._service.worker_died(message, now))
        elif message is not None:
            log.warning("dropped unexpected %s on the request socket", kind.__name__)

    def _on_peer_frames(self, peer, frames: list) -> None:
        if peer is None or len(frames) != 1:
            return
        kind_of_peer, key = peer
        message = self._decode(frames[0], f"{kind_of_peer} {key!r}")
        kind = type(message)
        if kind is msg.LeaseGranted:
            # A grant without a node id is routed back to the raylet that sent it.
            self._actor_event(ae.LeaseGrantedEvent(
                message.request_id, message.lease_id, message.worker_id,
                message.worker_endpoint, message.node_id or key, tuple(message.gpu_ids)))
        elif kind is msg.LeaseFailed:
            self._actor_event(ae.LeaseFailedEvent(*message))
        elif kind is msg.LeaseInfeasible:
            log.warning("raylet %s: lease %d is infeasible there: %s",
                        key.hex(), message.request_id, message.message)
        elif kind is msg.BundlesPrepared and kind_of_peer == "raylet":
            self._execute(self._service.bundles_prepared(key, message, time.monotonic()))
        elif kind is msg.BundlesCommitted and kind_of_peer == "raylet":
            self._execute(self._service.bundles_committed(key, message, time.monotonic()))
        elif kind is msg.ReclaimIdleLeases:
            pass   # the GCS holds no idle leases: every actor worker is dedicated
        elif kind is msg.TaskReply and kind_of_peer == "worker":
            actor_id = self._workers[key][1]
            self._actor_event(ae.CreationTaskRepliedEvent(actor_id, key, message.status,
                                                          message.returns))
        elif message is not None:
            log.warning("dropped unexpected %s from %s", kind.__name__, kind_of_peer)

    # ---------------------------------------------------------------- timers ---
    def _on_tick(self, now: float) -> None:
        self._execute(self._service.tick(now))
        if now - self._last_checkpoint >= CHECKPOINT_PERIOD_S:
            self._last_checkpoint = now
            self._tables.checkpoint()
        if self.config.watch_pid and not pid_alive(self.config.watch_pid):
            log.info("watched pid %d is gone; exiting", self.config.watch_pid)
            self.stop()

    # --------------------------------------------------------------- actions ---
    def _actor_event(self, event) -> None:
        self._execute(self._service.actor_event(event, time.monotonic()))

    def _execute(self, actions: list) -> None:
        for action in actions:
            kind = type(action)
            if kind is ae.Reply:
                self._reply(action.request_ref, action.ok, action.payload)
            elif kind is Publish:
                self._pub.send_multipart(msg.encode_topic(action.topic, action.message))
            elif kind is ae.RequestLease:
                self._send_to_raylet(action.node_id, msg.RequestWorkerLease(
                    action.request_id, action.resources, action.actor_id, action.job_id,
                    action.env))
            elif kind is ae.CancelLease:
                self._send_to_raylet(action.node_id, msg.CancelLeaseRequest(action.request_id))
            elif kind is ae.ReturnLease:
                self._send_to_raylet(action.node_id, msg.ReturnWorker(action.lease_id, True))
            elif kind is ae.KillWorker:
                self._send_to_raylet(action.node_id, msg.KillWorker(
                    action.worker_id, not action.graceful, action.message))
            elif kind is pgm.PrepareBundles:
                self._send_to_raylet(action.node_id, msg.PrepareBundles(
                    action.pg_id, action.attempt, action.bundles))
            elif kind is pgm.CommitBundles:
                self._send_to_raylet(action.node_id, msg.CommitBundles(
                    action.pg_id, action.attempt, action.indices))
            elif kind is pgm.ReturnBundles:
                self._send_to_raylet(action.node_id, msg.ReturnBundles(action.pg_id, action.indices))
            elif kind is pgm.ReleaseUnusedBundles:
                self._send_to_raylet(action.node_id, msg.ReleaseUnusedBundles(action.keep))
            elif kind is ae.PushCreationTask:
                self._push_creation_task(action)
            elif kind is ae.CloseWorkerChannel:
                entry = self._workers.pop(action.worker_endpoint, None)
                if entry is not None:
                    self._close_peer(entry[0])
            elif kind is ConnectRaylet:
                self._connect_raylet(action.node_id, action.endpoint)
            elif kind is DisconnectRaylet:
                entry = self._raylets.pop(action.node_id, None)
                if entry is not None:
                    self._close_peer(entry[0])
            elif kind is ae.Warn:
                log.warning("%s", action.message)
            else:
                log.error("unknown action %r", action)

    def _push_creation_task(self, action: ae.PushCreationTask) -> None:
        old = self._workers.pop(action.worker_endpoint, None)
        if old is not None:
            self._close_peer(old[0])
        sock = transport.dealer()
        try:
            sock.connect(action.worker_endpoint)
        except zmq.ZMQError as exc:
            # An endpoint zmq cannot even parse: treat it as a failed creation
            # so the actor restarts or dies instead of waiting forever.
            sock.close(linger=0)
            log.warning("cannot connect to worker %r: %s", action.worker_endpoint, exc)
            self._actor_event(ae.CreationTaskRepliedEvent(
                action.actor_id, action.worker_endpoint, msg.TaskStatus.SYSTEM_ERROR, []))
            return
        self._workers[action.worker_endpoint] = (sock, action.actor_id)
        self._add_peer(sock, ("worker", action.worker_endpoint))
        sock.send(msg.encode(msg.PushTask(action.spec)))

    # ---------------------------------------------------------------- sockets ---
    def _connect_raylet(self, node_id: bytes, endpoint: str) -> None:
        old = self._raylets.get(node_id)
        if old is not None and old[1] == endpoint:
            return     # same raylet re-registering: zmq reconnects by itself
        if old is not None:
            self._close_peer(old[0])
        sock = transport.dealer()
        sock.connect(endpoint)
        self._raylets[node_id] = (sock, endpoint)
        self._add_peer(sock, ("raylet", node_id))

    def _add_peer(self, sock: zmq.Socket, peer: tuple) -> None:
        self._peer_of[sock] = peer
        self._poller.register(sock, zmq.POLLIN)

    def _close_peer(self, sock: zmq.Socket) -> None:
        self._poller.unregister(sock)
        self._peer_of.pop(sock, None)
        sock.close(linger=0)

    def _send_to_raylet(self, node_id: bytes, message) -> None:
        entry = self._raylets.get(node_id)
        if entry is None:
            log.warning("not sending %s: node %s has no raylet connection",
                        type(message).__name__, node_id.hex())
            return
        entry[0].send(msg.encode(message))

    def _reply(self, ref: tuple, ok: bool, payload) -> None:
        identity, request_id = ref
        if not ok:   # plain (int, str): a reader needs no zray class to unpickle it
            payload = (int(payload[0]), str(payload[1]))
        try:
            self._router.send_multipart([identity, msg.encode(msg.GcsReply(request_id, ok, payload))])
        except zmq.ZMQError as exc:   # ROUTER_MANDATORY: the client has gone
            log.warning("could not reply to client %s: %s", identity.hex(), exc)


def _write_atomically(path: str, text: str) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as out:
        out.write(text)
    os.rename(tmp, path)


def _parse_args(argv) -> GcsConfig:
    parser = argparse.ArgumentParser(prog="python -m zray.gcs.server", description=__doc__.split("\n")[0])
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port")
    parser.add_argument("--ready-file", default=None)
    parser.add_argument("--storage-dir", default=None, help="default: the session dir")
    parser.add_argument("--watch-pid", type=int, default=None, help="exit when this pid is gone")
    parser.add_argument("--node-timeout-s", type=float, default=10.0)
    ns = parser.parse_args(argv)
    return GcsConfig(session_dir=ns.session_dir, host=ns.host, port=ns.port,
                     ready_file=ns.ready_file, storage_dir=ns.storage_dir,
                     watch_pid=ns.watch_pid, node_timeout_s=ns.node_timeout_s)


def main(argv=None) -> int:
    config = _parse_args(argv)
    log_dir = os.path.join(config.session_dir, "logs")
    os.makedirs(log_dir, exist_ok=True)
    logging.basicConfig(filename=os.path.join(log_dir, "gcs.log"), level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = GcsServer(config)
    signal.signal(signal.SIGTERM, server.stop)
    signal.signal(signal.SIGINT, server.stop)
    server.start()
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
