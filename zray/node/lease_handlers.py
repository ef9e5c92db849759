"""The raylet's worker leases (mixin of Raylet: uses its ``lease_queue``,
``leases``, ``available``/``total`` resources, ``pool`` and ``send``).

A RequestWorkerLease is granted an idle worker when its resources fit,
queued otherwise (an infeasible one is told so once and stays queued, as in
Ray); owners holding idle leases are asked to return them when requests
wait.  A worker blocked in get/wait gives its CPU back until it resumes.
"""
from __future__ import annotations

import logging
import signal
import time
from collections import deque

from .. import runtime_env
from ..sockets import messages as m
from . import resources as res
from .worker_pool import ACTOR, EXITING, LEASED

RECLAIM_INTERVAL_S = 0.05
GRACEFUL_EXIT_S = 30.0       # a gracefully killed actor's time to run __ray_shutdown__

log = logging.getLogger("zray.raylet")


class LeaseRequest:
    __slots__ = ("client", "request_id", "demand", "placement", "actor_id", "job_id", "warned",
                 "env", "queued_at")

    def __init__(self, client, msg, demand, placement, env=()):
        self.client = client
        self.request_id = msg.request_id
        self.demand = demand
        self.placement = placement
        self.actor_id = msg.actor_id
        self.job_id = msg.job_id
        self.warned = False
        self.env = env                # runtime_env env_vars the worker must have been started with
        self.queued_at = time.monotonic()


class Lease:
    __slots__ = ("lease_id", "client", "worker", "demand", "cpu_released", "gpus", "gpu_pool")

    def __init__(self, lease_id, client, worker, demand, gpus=(), gpu_pool=None):
        self.lease_id = lease_id
        self.client = client
        self.worker = worker
        self.demand = demand
        self.cpu_released = False
        self.gpus = gpus              # ((device, amount), ...) from gpu_pool
        self.gpu_pool = gpu_pool      # the node's GpuInstances, or a group bundle's


def _uses_gpu(demand: dict) -> bool:
    return any(amount > 0 and (name == "GPU" or name.startswith("GPU_group_"))
               for name, amount in demand.items())


def _in_group(demand: dict) -> bool:
    return any("_group_" in name for name in demand)


def cpu_part(demand: dict) -> dict:
    """The CPU a lease holds: plain, or a placement group bundle's."""
    return {name: amount for name, amount in demand.items()
            if name == "CPU" or name.startswith("CPU_group_")}


class LeaseHandlers:
    def on_request_lease(self, identity, msg) -> None:
        try:
            demand = res.to_fixed(msg.resources)
            env = runtime_env.check_pairs(msg.env)
        except (TypeError, ValueError) as exc:
            self.send(identity, m.LeaseFailed(msg.request_id, 1, f"bad lease request: {exc}"))
            return
        placement = demand
        if msg.actor_id is not None and not msg.resources:
            placement = {"CPU": res.UNIT}   # actors: 1 CPU to place, 0 to run (Ray's default)
        request = LeaseRequest(identity, msg, demand, placement, env)
        self.lease_queue.append(request)
        self._schedule()

    def on_cancel_lease(self, identity, msg) -> None:
        self.lease_queue = deque(r for r in self.lease_queue
                                 if not (r.client == identity and r.request_id == msg.request_id))

    def _schedule(self) -> None:
        if not self.lease_queue:
            return
        waiting = deque()
        need_reclaim = False
        pool = self.pool
        for request in self.lease_queue:
            if not res.fits(request.placement, self.total):
                waiting.append(request)
                # A group's resources appear once it is placed: no warning for those.
                if not request.warned and not _in_group(request.demand):
                    request.warned = True
                    self.send(request.client, m.LeaseInfeasible(request.request_id, (
                        f"No node can ever run a task or actor that needs "
                        f"{res.to_float(request.demand) or res.to_float(request.placement)}: "
                        f"this cluster has {self.total_float}. It stays queued until a node "
                        f"that fits joins.")))
                continue
            if not (res.fits(request.placement, self.available) and res.fits(request.demand, self.available)):
                waiting.append(request)
                need_reclaim = True
                continue
            assigned = self.assign_gpus(request.demand)
            if assigned is None:      # enough GPU in total, but not on few enough devices
                waiting.append(request)
                need_reclaim = True   # idle leases may hold the fractions it needs
                continue
            gpu_pool, gpus = assigned
            worker = pool.pop_idle(request.env, _uses_gpu(request.demand))
            if worker is None:
                if gpu_pool is not None:
                    gpu_pool.release(gpus)
                waiting.append(request)
                env = request.env
                if pool.starting(env) < sum(1 for r in waiting if r.env == env):
                    pool.start_worker(env)
                continue
            self._grant(request, worker, gpus, gpu_pool)
        self.lease_queue = waiting
        if need_reclaim:
            now = time.monotonic()
            if now - self._last_reclaim > RECLAIM_INTERVAL_S:
                self._last_reclaim = now
                owners = {lease.client for lease in self.leases.values()
                          if lease.worker.state == LEASED}
                for owner in owners:
                    self.send(owner, m.ReclaimIdleLeases())

    def _grant(self, request, worker, gpus=(), gpu_pool=None) -> None:
        lease_id = next(self.lease_ids)
        self.last_grant = time.monotonic()
        res.subtract(self.available, request.demand)
        lease = Lease(lease_id, request.client, worker, request.demand, gpus, gpu_pool)
        self.leases[lease_id] = lease
        worker.lease = lease
        if request.actor_id is not None:
            worker.state = ACTOR
            worker.actor_id = request.actor_id
        else:
            worker.state = LEASED
        self.send(request.client, m.LeaseGranted(request.request_id, lease_id, worker.worker_id,
                                                 worker.endpoint, self.node_id,
                                                 tuple(device for device, _ in gpus)))

    def on_return_worker(self, identity, msg) -> None:
        lease = self.leases.get(msg.lease_id)
        if lease is None or lease.client != identity:
            return
        self._end_lease(lease, kill_worker=msg.disconnect_worker)
        self._schedule()

    def give_back(self, lease) -> None:
        """Return what ``lease`` holds to the node (lease already dropped).  A
        blocked lease's CPU is back already; a removed group's resources are gone."""
        demand = lease.demand
        if lease.cpu_released:
            released = cpu_part(demand)
            demand = {k: v for k, v in demand.items() if k not in released}
        total = self.total
        res.add(self.available, {k: v for k, v in demand.items() if k in total})
        if lease.gpu_pool is not None:
            lease.gpu_pool.release(lease.gpus)

    def _end_lease(self, lease, kill_worker: bool) -> None:
        self.leases.pop(lease.lease_id, None)
        self.give_back(lease)
        worker = lease.worker
        if worker.lease is lease:
            worker.lease = None
            if kill_worker or worker.state == ACTOR:
                self.pool.kill(worker)
            elif worker.state == LEASED:
                self.pool.mark_idle(worker)

    def on_blocked(self, identity, msg) -> None:
        worker = self._worker_of(identity)
        lease = worker.lease if worker is not None else None
        if lease is not None and not lease.cpu_released and cpu_part(lease.demand):
            lease.cpu_released = True
            res.add(self.available, {k: v for k, v in cpu_part(lease.demand).items()
                                     if k in self.total})
            self._schedule()

    def on_unblocked(self, identity, msg) -> None:
        worker = self._worker_of(identity)
        lease = worker.lease if worker is not None else None
        if lease is not None and lease.cpu_released:
            lease.cpu_released = False
            res.subtract(self.available, {k: v for k, v in cpu_part(lease.demand).items()
                                          if k in self.total})

    def _worker_of(self, identity):
        client = self.clients.get(identity)
        return self.pool.workers.get(client["worker_id"]) if client else None

    def on_retire_worker(self, identity, msg) -> None:
        """A worker past max_calls that still owns objects in use: its lease
        ends (the owner hears LeasedWorkerDied and sends its tasks elsewhere)
        and it is never leased again; it exits once it owns nothing in use."""
        worker = self._worker_of(identity)
        if worker is None:
            return
        worker.state = EXITING
        lease = worker.lease
        if lease is not None:
            self.leases.pop(lease.lease_id, None)
            self.give_back(lease)
            worker.lease = None
            self.send(lease.client, m.LeasedWorkerDied(
                lease.lease_id, worker.worker_id, "the worker retired after max_calls", True))
        self._schedule()

    def on_kill_worker(self, identity, msg) -> None:
        info = self.pool.workers.get(msg.worker_id)
        if info is None:
            return
        if msg.force or info.pid is None:
            self.pool.kill(info)
            return
        # Graceful (an actor whose handles are gone, or whose job ended): SIGTERM
        # lets it finish its calls and run __ray_shutdown__; SIGKILL if it has
        # not left within GRACEFUL_EXIT_S.
        self.pool.kill(info, signal.SIGTERM)
        self.graceful_deadlines[msg.worker_id] = time.monotonic() + GRACEFUL_EXIT_S

    def enforce_graceful_deadlines(self, now) -> None:
        for worker_id, deadline in list(self.graceful_deadlines.items()):
            info = self.pool.workers.get(worker_id)
            if info is None:
                del self.graceful_deadlines[worker_id]
            elif now >= deadline:
                del self.graceful_deadlines[worker_id]
                log.warning("worker %s did not exit within %ss of a graceful kill: killing it",
                            worker_id.hex(), GRACEFUL_EXIT_S)
                self.pool.kill(info)
