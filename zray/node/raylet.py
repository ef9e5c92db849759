"""The raylet: one per host.  Local resources, worker pool, lease queue and
the host's shared-memory object store.

    python -m zray.node.raylet --session-dir D --gcs-ready-file F | --gcs-address A
        --node-ip 127.0.0.1 --num-cpus N [--num-gpus G] [--resources JSON]
        [--object-store-memory BYTES] [--ready-file F] [--watch-pid PID]

Sockets: ROUTER on ipc (local drivers and workers) and tcp (the GCS, remote
owners); DEALER to the GCS (registration, resource reports every 100 ms,
worker deaths).  One thread owns them all; the fork server's stdout and
the disk threads' wake-up pipes are polled in the same loop.  Leases live in
lease_handlers.py, object-store requests in store_handlers.py (mixins).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections import deque

import zmq

from .. import ids
from ..pids import pid_alive
from ..sockets import messages as m
from ..sockets import transport
from ..sockets.messages import GcsMethod
from ..store import ArenaAllocator, ObjectTable
from ..store import shm
from . import resources as res
from .bundle_handlers import BundleHandlers
from .lease_handlers import LeaseHandlers
from .store_handlers import StoreHandlers
from .gc_trigger import STUCK_LEASES_GC_S, GcTrigger, gc_config
from .gpu_ids import GpuInstances, node_device_ids
from .worker_pool import EXITING, IDLE, WorkerPool

log = logging.getLogger("zray.raylet")

REPORT_INTERVAL_S = 0.1
TICK_S = 0.05
IDLE_WORKER_KILL_S = 1.0     # idle workers beyond num_cpus are ended after this (Ray: 1 s)


class Raylet(LeaseHandlers, BundleHandlers, StoreHandlers):
    def __init__(self, args):
        self.args = args
        self.session_dir = args.session_dir
        self.node_id = ids.random_unique_id()
        self.node_ip = args.node_ip
        total = {"CPU": float(args.num_cpus)}
        if args.num_gpus:
            total["GPU"] = float(args.num_gpus)
        total.update(json.loads(args.resources or "{}"))
        total["memory"] = float(args.memory)
        total["object_store_memory"] = float(args.object_store_memory)
        total[f"node:{self.node_ip}"] = 1.0
        self.total_float = total
        self.total = res.to_fixed(total)
        self.available = dict(self.total)
        self.gpus = GpuInstances(capacity={device: res.UNIT
                                           for device in node_device_ids(int(total.get("GPU", 0)))})
        self.bundles: dict = {}          # (pg_id, index) -> bundle_handlers.Bundle
        self.lease_queue: deque = deque()
        self.leases: dict = {}
        self.graceful_deadlines: dict = {}   # worker_id -> when a graceful kill turns SIGKILL
        self.lease_ids = iter(range(1, 1 << 62))
        self.clients: dict = {}          # identity -> {"pid", "is_driver", "pins": {oid: n}}
        self._last_reclaim = 0.0
        self.last_grant = time.monotonic()   # lease_handlers._grant; stuck leases trigger a GC
        self.gc = GcTrigger(gc_config(json.loads(args.system_config or "{}")), time.monotonic())
        self._last_report = 0.0
        self._running = True

        shm_dir = os.path.join("/dev/shm" if os.path.isdir("/dev/shm") else self.session_dir,
                               f"zray-{os.path.basename(self.session_dir)}")
        self.arena_path = os.path.join(shm_dir, "arena")
        shm.create_arena(self.arena_path, args.object_store_memory)
        self.shm_dir = shm_dir
        self.store = ObjectTable(ArenaAllocator(args.object_store_memory))
        self.pending_creates: deque = deque()   # creates waiting for space (FIFO)
        self.creators: dict = {}                # object id -> client writing it (until sealed)
        self.orphaned_creations: list = []      # (abort after, client) of clients that went away
        self.pending_restores: deque = deque()  # gets of spilled objects waiting for space
        self.spilled: dict = {}                 # object id -> size, in the LMDB spill store
        self.spill_counts = {"spilled_objects_total": 0, "spilled_bytes_total": 0,
                             "restored_objects_total": 0, "restored_bytes_total": 0}
        self._spill = None
        self.spill_worker = None
        self.restore_worker = None
        self.restoring: dict = {}               # object id -> size, being read back by the restore thread
        self.restore_failures: dict = {}        # object id -> error, for the gets waiting on it
        self.spilling: dict = {}                # object id -> size, being written by the spill thread
        self.spill_failure = None               # (monotonic time, message) of the last failed spill
        self._arena_rw = None

        self.router = transport.router(b"raylet")
        self.ipc_endpoint = transport.bind_ipc(self.router, os.path.join(self.session_dir, "sockets", "raylet"))
        self.tcp_endpoint = transport.bind_tcp(self.router, self.node_ip, args.port)

        gcs_address, gcs_pub = args.gcs_address, args.gcs_pub_address
        if args.gcs_ready_file:
            info = _wait_json(args.gcs_ready_file, 20.0)
            gcs_address, gcs_pub = info["gcs_address"], info["pub_address"]
        self.gcs_address, self.gcs_pub_address = gcs_address, gcs_pub
        self.gcs = transport.dealer(b"raylet-" + self.node_id)
        self.gcs.connect(gcs_address)
        self.pool = WorkerPool(self.session_dir, self.ipc_endpoint)
        for _ in range(int(args.num_cpus)):
            self.pool.start_worker()

        node = {"node_id": self.node_id, "node_ip": self.node_ip,
                "raylet_endpoint": self.tcp_endpoint, "resources_total": total,
                "object_store_memory": args.object_store_memory}
        self.gcs.send(m.encode(m.GcsRequest(0, int(GcsMethod.REGISTER_NODE), (node,))))
        if args.ready_file:
            _write_json(args.ready_file, {"node_id": self.node_id.hex(), "ipc": self.ipc_endpoint,
                                          "tcp": self.tcp_endpoint, "pid": os.getpid(),
                                          "gcs_address": gcs_address, "gcs_pub_address": gcs_pub})

    # ---------------------------------------------------------------- loop ---
    def run(self) -> None:
        poller = self.poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.gcs, zmq.POLLIN)
        poller.register(self.pool.stdout_fd, zmq.POLLIN)
        next_tick = time.monotonic()
        watch = self.args.watch_pid
        while self._running:
            timeout = max(0, int((next_tick - time.monotonic()) * 1000))
            for sock, _ in poller.poll(timeout):
                if sock is self.router:
                    self._drain_router()
                elif sock is self.gcs:
                    self._drain_gcs()
                elif self.spill_worker is not None and sock == self.spill_worker.wake_r:
                    self.on_spills_done()
                elif self.restore_worker is not None and sock == self.restore_worker.wake_r:
                    self.on_restores_done()
                else:
                    for event in self.pool.read_events():
                        self._on_pool_event(event)
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + TICK_S
                if watch and not pid_alive(watch):
                    log.warning("watched process %s is gone: exiting", watch)
                    break
                self._report_resources(now)
                self.expire_waiting(now)
                self._check_clients(now)
                self._reap_idle_workers(now)
                self.enforce_graceful_deadlines(now)
                self.abort_orphaned_creations(now)
                self._maybe_collect_garbage(now)
                if self.lease_queue:
                    # Requests waiting for resources: ask owners again for their idle
                    # leases (an owner busy waiting may only notice its own idle
                    # timer late), at most every lease_handlers.RECLAIM_INTERVAL_S.
                    self._schedule()
        self.shutdown()

    def _drain_router(self) -> None:
        while True:
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 2:
                log.warning("dropped message with %d frames", len(frames))
                continue
            try:
                msg = m.decode(frames[1])
            except m.MalformedMessage as exc:
                log.warning("dropped malformed message from %r: %s", frames[0][:20], exc)
                continue
            handler = self._handlers.get(type(msg))
            if handler is None:
                log.warning("unexpected message %s", type(msg).__name__)
                continue
            try:
                handler(self, frames[0], msg)
            except Exception:
                log.exception("handler for %s failed", type(msg).__name__)

    def _drain_gcs(self) -> None:
        while True:
            try:
                frame = self.gcs.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                msg = m.decode(frame)
            except m.MalformedMessage as exc:
                log.warning("dropped malformed GCS message: %s", exc)
                continue
            if type(msg) is m.GcsReply and not msg.ok:
                log.error("GCS refused a request: %s", msg.payload)

    def send(self, identity: bytes, msg) -> None:
        try:
            self.router.send_multipart([identity, m.encode(msg)])
        except zmq.ZMQError as exc:
            log.warning("could not send %s to %r: %s", type(msg).__name__, identity[:20], exc)

    # ------------------------------------------------------------- clients ---
    def on_register(self, identity, msg) -> None:
        self.clients[identity] = {"pid": msg.pid, "is_driver": msg.is_driver, "pins": {},
                                  "worker_id": msg.worker_id, "job_id": msg.job_id,
                                  "endpoint": msg.endpoint}
        if not msg.is_driver:
            info = self.pool.workers.get(msg.worker_id)
            if info is None:
                log.warning("unknown worker %s registered", msg.worker_id.hex())
                return
            info.endpoint = msg.endpoint
            info.pid = msg.pid
            self.pool.by_pid[msg.pid] = info
            self.pool.mark_idle(info)
        self.send(identity, m.RegisterClientReply(
            self.node_id, self.node_ip, self.arena_path, self.args.object_store_memory,
            self.gcs_address, self.gcs_pub_address, self.session_dir))
        self._schedule()

    def on_disconnect(self, identity, msg) -> None:
        self._client_gone(identity)

    def _client_gone(self, identity) -> None:
        client = self.clients.pop(identity, None)
        if client is None:
            return
        for object_id, count in client["pins"].items():
            for _ in range(count):
                try:
                    self.store.release_reader(object_id)
                except Exception:
                    break
        self.drop_waiting(identity)
        self.abort_creations_of(identity)
        self.serve_waiting()   # its pins are gone: space may be free now
        # As Ray's raylet does, end the workers leased to a client that is gone:
        # the tasks they run have no owner to report to, and a worker still
        # running one must not be handed out as idle.
        for lease in [l for l in self.leases.values() if l.client == identity]:
            self._end_lease(lease, kill_worker=True)
        self.lease_queue = deque(r for r in self.lease_queue if r.client != identity)
        if client["is_driver"]:
            self.gcs.send(m.encode(m.GcsRequest(0, int(GcsMethod.JOB_FINISHED),
                                                (client.get("job_id", b""),))))
            # Objects it owned are gone with it: borrowers get OwnerDiedError.
            self.gcs.send(m.encode(m.WorkerDied(self.node_id, client["worker_id"], None,
                                                f"driver pid {client['pid']} exited")))
        self._schedule()

    def _reap_idle_workers(self, now) -> None:
        """The pool grows on demand (blocked tasks, actors); shrink it back to
        num_cpus idle workers once the extra ones have idled a while."""
        idle = [w for w in self.pool.workers.values() if w.state == IDLE]
        extra = len(idle) - max(1, int(self.args.num_cpus))
        if extra <= 0:
            return
        idle.sort(key=lambda w: w.idle_since)
        wall = time.monotonic()
        for worker in idle[:extra]:
            if wall - worker.idle_since > IDLE_WORKER_KILL_S:
                worker.state = EXITING  # not grantable while it exits
                self.pool.kill(worker, signal.SIGTERM)

    def _check_clients(self, now) -> None:
        # Drivers killed without saying goodbye: their leases come back.
        for identity, client in list(self.clients.items()):
            if client["is_driver"] and not pid_alive(client["pid"]):
                log.warning("driver pid %s died", client["pid"])
                self._client_gone(identity)

    def _on_pool_event(self, event) -> None:
        kind, pid, code = event
        if kind == "forkserver_died":
            log.error("fork server died: exiting")
            self._running = False
            return
        info = self.pool.by_pid.get(pid)
        if info is None:
            return
        self.pool.remove(info)
        self._client_gone(info.worker_id)
        lease = info.lease
        message = f"worker pid {pid} exited with code {code}"
        if lease is not None:
            self.leases.pop(lease.lease_id, None)
            self.give_back(lease)
            if info.actor_id is None:
                self.send(lease.client, m.LeasedWorkerDied(lease.lease_id, info.worker_id, message))
        # INTENDED_EXIT_CODE is a worker leaving on purpose (exit_actor,
        # __ray_terminate__, a graceful kill); anything else, or a signal, is a crash.
        self.gcs.send(m.encode(m.WorkerDied(self.node_id, info.worker_id, info.actor_id, message,
                                            code == m.INTENDED_EXIT_CODE)))
        self._schedule()

    def on_trigger_global_gc(self, identity, msg) -> None:
        self.gc.request(explicit=True)
        self._maybe_collect_garbage(time.monotonic())

    def _maybe_collect_garbage(self, now) -> None:
        queue = self.lease_queue
        # (An infeasible request - told so, `warned` - waits for a node, not for garbage.)
        if self.pending_creates or (queue and not queue[0].warned and now - max(
                self.last_grant, queue[0].queued_at) >= STUCK_LEASES_GC_S):
            self.gc.request()
        if self.gc.due(now, self.store.used_fraction()):
            for identity in list(self.clients):
                self.send(identity, m.LocalGC())

    def on_node_stats(self, identity, msg) -> None:
        stats = dict(self.store.stats())
        stats.update(self.spill_counts)
        stats["spilled_objects"] = len(self.spilled)
        stats["spilled_bytes"] = sum(self.spilled.values())
        stats.update({
            "node_id": self.node_id.hex(),
            "objects": [(oid.hex(), info.size, info.readers) for oid, info in self.store.objects()],
            "spilled": [(oid.hex(), size) for oid, size in self.spilled.items()],
            "clients": [(c["worker_id"].hex(), c["pid"], c["endpoint"], c["is_driver"])
                        for c in self.clients.values()],
            "workers": {w.worker_id.hex(): w.state for w in self.pool.workers.values()},
            "available": res.to_float(self.available), "total": self.total_float,
            "queued_leases": len(self.lease_queue),
            "waiting_creates": len(self.pending_creates),
            "waiting_restores": len(self.pending_restores),
            "gc_collections": self.gc.collections})
        self.send(identity, m.NodeStatsReply(msg.request_id, stats))

    _handlers = {
        m.RegisterClient: on_register,
        m.DisconnectClient: on_disconnect,
        m.RequestWorkerLease: LeaseHandlers.on_request_lease,
        m.CancelLeaseRequest: LeaseHandlers.on_cancel_lease,
        m.ReturnWorker: LeaseHandlers.on_return_worker,
        m.NotifyBlocked: LeaseHandlers.on_blocked,
        m.NotifyUnblocked: LeaseHandlers.on_unblocked,
        m.KillWorker: LeaseHandlers.on_kill_worker,
        m.RetireWorker: LeaseHandlers.on_retire_worker,
        m.CreateObject: StoreHandlers.on_create_object,
        m.SealObject: StoreHandlers.on_seal_object,
        m.GetObjectLocal: StoreHandlers.on_get_object,
        m.ReleaseObject: StoreHandlers.on_release_object,
        m.FreeObjects: StoreHandlers.on_free_objects,
        m.GetNodeStats: on_node_stats,
        m.TriggerGlobalGC: on_trigger_global_gc,
        m.PrepareBundles: BundleHandlers.on_prepare_bundles,
        m.CommitBundles: BundleHandlers.on_commit_bundles,
        m.ReturnBundles: BundleHandlers.on_return_bundles,
        m.ReleaseUnusedBundles: BundleHandlers.on_release_unused_bundles,
    }

    def _report_resources(self, now) -> None:
        if now - self._last_report >= REPORT_INTERVAL_S:
            self._last_report = now
            self.gcs.send(m.encode(m.ReportResources(self.node_id, res.to_float(self.available),
                                                     self.total_float)))

    def stop(self, *_):
        self._running = False

    def shutdown(self) -> None:
        try:
            self.gcs.send(m.encode(m.GcsRequest(0, int(GcsMethod.UNREGISTER_NODE), (self.node_id,))))
        except zmq.ZMQError:
            pass
        self.pool.shutdown()
        for worker in (self.spill_worker, self.restore_worker):
            if worker is not None:
                worker.stop()
        if self._spill is not None:
            self._spill.close()
            if self.args.spill_dir:    # outside the session directory: ours to remove
                shutil.rmtree(self._spill.path, ignore_errors=True)
        self.router.close(0)
        self.gcs.close(0)
        shutil.rmtree(self.shm_dir, ignore_errors=True)


def _wait_json(path: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            time.sleep(0.005)
    raise TimeoutError(f"{path} did not appear within {timeout}s")


def _write_json(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.rename(tmp, path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="zray-raylet")
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--gcs-ready-file")
    parser.add_argument("--gcs-address")
    parser.add_argument("--gcs-pub-address")
    parser.add_argument("--node-ip", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--num-cpus", type=float, required=True)
    parser.add_argument("--num-gpus", type=float, default=0)
    parser.add_argument("--resources", default="{}")
    parser.add_argument("--memory", type=int, default=0)
    parser.add_argument("--object-store-memory", type=int, required=True)
    parser.add_argument("--object-store-full-timeout-s", type=float, default=10.0,
                        help="how long a create waits for space before ObjectStoreFullError")
    parser.add_argument("--spill-dir", default=None,
                        help="directory for the LMDB spill store (default: the session directory)")
    parser.add_argument("--system-config", default="{}",
                        help="JSON of Ray config keys the raylet applies (the GC knobs)")
    parser.add_argument("--ready-file")
    parser.add_argument("--watch-pid", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(filename=os.path.join(args.session_dir, "logs", "raylet.log"),
                        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raylet = Raylet(args)
    signal.signal(signal.SIGTERM, raylet.stop)
    signal.signal(signal.SIGINT, raylet.stop)
    try:
        raylet.run()
    except Exception:
        log.exception("raylet crashed")
        raylet.shutdown()
        sys.exit(1)


if __name__ == "__main__":
    main()
