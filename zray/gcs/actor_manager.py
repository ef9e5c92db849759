"""The GCS actor table as a pure state machine: events in, actions out.

No sockets, no clock, no randomness: ``handle(event, now)`` takes an event
from zray.gcs.actor_events, mutates the table and returns the actions the server shell must carry out, in order (persist and
publish before replying, so an acknowledged change is durable).  Modelled on
dask's worker_state_machine; tests drive it with no network at all.

Actor lifecycle::

    PENDING_CREATION --creation task ok--> ALIVE
          |   \\--constructor raised--> DEAD (creation_error kept)
          |                               ^
    worker/node died, kill(no_restart=False): restarts left -> RESTARTING
          (RESTARTING behaves like PENDING_CREATION)  none left ------+

Placement: among alive nodes whose TOTAL resources fit the actor, take the
first (registration order) whose last reported AVAILABLE resources fit, else
the first that fits in total (the raylet queues the lease).  If no node fits in
total the actor stays pending, warned about once, and is retried whenever a
node registers or a node's totals change.  A LeaseFailed is retried with a
capped exponential backoff (Tick events) and the actor dies after
MAX_LEASE_FAILURES in a row.  A lease pending on a node that dies is simply
re-requested elsewhere (no restart used); a worker lost after its lease was
granted uses one restart (max_restarts -1 = infinite), as in Ray.
"""
from __future__ import annotations

from typing import Optional

from zray.gcs.actor_events import (
    ActorOutOfScopeEvent, CancelLease, CloseWorkerChannel, CreateActorEvent,
    CreationTaskRepliedEvent, GetActorInfoEvent, JobFinishedEvent, KillActorEvent,
    KillWorker, LeaseFailedEvent, LeaseGrantedEvent, NodeAddedEvent, NodeDiedEvent,
    NodeResourcesEvent, PlacementGroupRemovedEvent, PublishActor, Reply, RequestLease,
    ReturnLease, PushCreationTask, SaveActor, TickEvent, Warn, WorkerDiedEvent,
)
from zray import bundle_resources
from zray.exceptions import INTENDED_EXIT_MESSAGE   # the exiting call's own error says the same
from zray.gcs.errors import GcsErrorCode
from zray.sockets.messages import ReturnKind, TaskStatus

PENDING_CREATION = "PENDING_CREATION"
ALIVE = "ALIVE"
RESTARTING = "RESTARTING"
DEAD = "DEAD"

KILLED_MESSAGE = "The actor is dead because it was killed by `ray.kill`."   # Ray's words
OWNER_DIED_MESSAGE = "The actor died because its owner has died."
OUT_OF_SCOPE_MESSAGE = "The actor is dead because all references to the actor were removed."
JOB_FINISHED_MESSAGE = "The actor is dead because its job finished."
GROUP_REMOVED_MESSAGE = "The actor died because its placement group was removed."
UNSCHEDULABLE_MESSAGE = ("The actor is not schedulable: the node specified via "
                         "NodeAffinitySchedulingStrategy doesn't exist any more or is "
                         "infeasible, and soft=False was specified.")
CREATION_ERROR_MESSAGE = "The actor died because of an error raised in its creation task"
MAX_LEASE_FAILURES = 10
LEASE_RETRY_BASE_S = 0.1
LEASE_RETRY_CAP_S = 2.0
DEFAULT_ACTOR_PLACEMENT = {"CPU": 1}
_RESOURCE_EPSILON = 1e-9


# ------------------------------------------------------------------- table ---
_PERSISTED = ("actor_id", "job_id", "name", "namespace", "detached", "resources",
              "creation_task", "class_name", "max_restarts", "num_restarts", "state",
              "node_id", "worker_id", "lease_id", "worker_endpoint", "endpoint",
              "death_message", "creation_error", "runtime_env", "owner_id", "node_affinity")
_INFO = ("actor_id", "job_id", "state", "endpoint", "node_id", "worker_id", "name",
         "namespace", "class_name", "death_message", "creation_error", "num_restarts",
         "max_restarts", "detached")
_REQUIRED_SPEC = ("actor_id", "job_id", "creation_task")


class _Actor:
    __slots__ = _PERSISTED + ("lease_request", "lease_failures", "warned_infeasible", "waiters")

    def __init__(self, **fields):
        for name in _PERSISTED:
            setattr(self, name, fields.get(name))
        self.lease_request: Optional[tuple] = None   # (node_id, request_id)
        self.lease_failures = 0
        self.warned_infeasible = False
        self.waiters: list = []                       # request_refs of wait_alive

    def record(self) -> dict:
        return {name: getattr(self, name) for name in _PERSISTED}

    def info(self) -> dict:
        return {name: getattr(self, name) for name in _INFO}

    def restarts_left(self) -> bool:
        return self.max_restarts == -1 or self.num_restarts < self.max_restarts


def _fits(have: dict, need: dict) -> bool:
    return all(have.get(name, 0) + _RESOURCE_EPSILON >= amount
               for name, amount in need.items() if amount > 0)


def _with_options(creation_task: tuple, **extra) -> tuple:
    """The creation task spec (TaskSpec fields) with ``extra`` in its options:
    the lease's GPU ids, the restart count (was_current_actor_reconstructed)."""
    from ..core.task_spec import TaskSpec
    spec = TaskSpec(*creation_task)
    return tuple(spec._replace(options=dict(spec.options or (), **extra)))


class ActorManager:
    def __init__(self):
        self._actors: dict[bytes, _Actor] = {}
        self._named: dict[tuple, bytes] = {}       # (namespace, name) -> non-DEAD actor
        self._by_worker: dict[bytes, bytes] = {}   # worker_id -> actor_id
        self._by_request: dict[int, bytes] = {}    # lease request_id -> actor_id
        self._infeasible: dict[bytes, None] = {}   # ordered set: wait for a node that fits
        self._backoff: dict[bytes, float] = {}     # actor_id -> retry lease at
        self._nodes: dict[bytes, tuple] = {}       # alive node_id -> (total, available)
        self._next_request_id = 1
        self._handlers = {
            CreateActorEvent: self._create, GetActorInfoEvent: self._get_info,
            KillActorEvent: self._kill, ActorOutOfScopeEvent: self._out_of_scope,
            JobFinishedEvent: self._job_finished, LeaseGrantedEvent: self._lease_granted,
            LeaseFailedEvent: self._lease_failed, CreationTaskRepliedEvent: self._creation_replied,
            WorkerDiedEvent: self._worker_died, NodeAddedEvent: self._node_added,
            NodeResourcesEvent: self._node_resources, NodeDiedEvent: self._node_died,
            TickEvent: self._tick, PlacementGroupRemovedEvent: self._group_removed,
        }

    def handle(self, event, now: float = 0.0) -> list:
        actions: list = []
        self._handlers[type(event)](event, now, actions)
        return actions

    # ------------------------------------------------------------ queries ---
    def info(self, actor_id: bytes):
        actor = self._actors.get(actor_id)
        return actor.info() if actor else None

    def all_info(self) -> list:
        """Every actor's info and resources (zray.util.state)."""
        return [dict(actor.info(), resources=dict(actor.resources or {}))
                for actor in self._actors.values()]

    def named_info(self, name: str, namespace: str):
        actor_id = self._named.get((namespace, name))
        return self._actors[actor_id].info() if actor_id else None

    def list_named(self, all_namespaces: bool, namespace: str) -> list:
        return [{"name": name, "namespace": ns} for (ns, name) in self._named
                if all_namespaces or ns == namespace]

    def restore(self, records: dict) -> list:
        """Reload persisted actors (before any node is added).  Unfinished
        creations are redone; a worker already leased for one is killed."""
        out: list = []
        for actor_id, record in records.items():
            actor = _Actor(**record)
            self._actors[actor_id] = actor
            if actor.state == DEAD:
                continue
            if actor.name:
                self._named[(actor.namespace, actor.name)] = actor_id
            if actor.state == ALIVE:
                if actor.worker_id is not None:
                    self._by_worker[actor.worker_id] = actor_id
                continue
            if actor.worker_id:
                out.append(KillWorker(actor.node_id, actor.worker_id,
                                      "The GCS restarted while this actor was being created"))
                self._clear_worker(actor)
                out.append(SaveActor(actor.record()))
            self._infeasible[actor_id] = None      # placed once nodes re-register
        return out

    # ------------------------------------------------------------ requests ---
    def _create(self, ev: CreateActorEvent, now, out):
        spec = ev.spec
        problem = self._check_spec(spec)
        if problem:
            out.append(Reply(ev.request_ref, False, (GcsErrorCode.BAD_REQUEST, problem)))
            return
        actor_id = spec["actor_id"]
        if actor_id in self._actors:   # a client retrying after a lost reply
            out.append(Reply(ev.request_ref, True, {"actor_id": actor_id, "existing": False}))
            return
        name, namespace = spec.get("name") or None, spec.get("namespace") or ""
        if name:
            holder = self._named.get((namespace, name))
            if holder is not None and spec.get("get_if_exists"):
                out.append(Reply(ev.request_ref, True, {"actor_id": holder, "existing": True}))
                return
            if holder is not None:
                out.append(Reply(ev.request_ref, False, (
                    GcsErrorCode.ACTOR_NAME_TAKEN,
                    f"Actor with name {name!r} already exists in the namespace {namespace}")))
                return
            self._named[(namespace, name)] = actor_id
        actor = _Actor(
            actor_id=actor_id, job_id=spec["job_id"], name=name, namespace=namespace,
            detached=bool(spec.get("detached")), resources=dict(spec.get("resources") or {}),
            creation_task=spec["creation_task"], class_name=spec.get("class_name", ""),
            max_restarts=int(spec.get("max_restarts", 0)), num_restarts=0,
            runtime_env=tuple(tuple(pair) for pair in spec.get("runtime_env") or ()),
            owner_id=spec.get("owner_id"),
            node_affinity=tuple(spec["node_affinity"]) if spec.get("node_affinity") else None,
            state=PENDING_CREATION, death_message="")
        self._actors[actor_id] = actor
        out.append(PublishActor(actor.record()))
        out.append(Reply(ev.request_ref, True, {"actor_id": actor_id, "existing": False}))
        self._schedule(actor, out)

    @staticmethod
    def _check_spec(spec) -> str:
        if not isinstance(spec, dict):
            return f"CREATE_ACTOR needs a spec dict, got {type(spec).__name__}"
        for key in _REQUIRED_SPEC:
            if key not in spec:
                return f"CREATE_ACTOR spec is missing {key!r}"
        if not isinstance(spec["actor_id"], bytes):
            return "CREATE_ACTOR spec actor_id must be bytes"
        max_restarts = spec.get("max_restarts", 0)
        if not isinstance(max_restarts, int) or max_restarts < -1:
            return f"CREATE_ACTOR max_restarts must be an int >= -1, got {max_restarts!r}"
        return ""

    def _get_info(self, ev: GetActorInfoEvent, now, out):
        actor = self._actors.get(ev.actor_id)
        if actor is None:
            out.append(self._unknown(ev.request_ref, ev.actor_id))
        elif ev.wait_alive and actor.state in (PENDING_CREATION, RESTARTING):
            actor.waiters.append(ev.request_ref)
        else:
            out.append(Reply(ev.request_ref, True, actor.info()))

    def _kill(self, ev: KillActorEvent, now, out):
        actor = self._actors.get(ev.actor_id)
        if actor is None:
            out.append(self._unknown(ev.request_ref, ev.actor_id))
            return
        if actor.state != DEAD:
            self._stop_placement(actor, out, kill_message=KILLED_MESSAGE)
            if not ev.no_restart and actor.restarts_left():
                self._restart(actor, out)
            else:
                self._die(actor, KILLED_MESSAGE, out)
        out.append(Reply(ev.request_ref, True, None))

    def _out_of_scope(self, ev: ActorOutOfScopeEvent, now, out):
        actor = self._actors.get(ev.actor_id)
        if actor is not None and not actor.detached and actor.state != DEAD:
            self._stop_placement(actor, out, kill_message=OUT_OF_SCOPE_MESSAGE,
                                 graceful=actor.state == ALIVE)
            self._die(actor, OUT_OF_SCOPE_MESSAGE, out)

    def _job_finished(self, ev: JobFinishedEvent, now, out):
        for actor in list(self._actors.values()):
            if actor.job_id == ev.job_id and not actor.detached and actor.state != DEAD:
                self._stop_placement(actor, out, kill_message=JOB_FINISHED_MESSAGE,
                                     graceful=actor.state == ALIVE)
                self._die(actor, JOB_FINISHED_MESSAGE, out)

    def _group_removed(self, ev: PlacementGroupRemovedEvent, now, out):
        group_hex = ev.pg_id.hex()
        for actor in list(self._actors.values()):
            if actor.state != DEAD and any(bundle_resources.is_group_resource(name, group_hex)
                                           for name in actor.resources):
                self._stop_placement(actor, out, kill_message=GROUP_REMOVED_MESSAGE)
                self._die(actor, GROUP_REMOVED_MESSAGE, out)

    @staticmethod
    def _unknown(request_ref, actor_id) -> Reply:
        shown = actor_id.hex() if isinstance(actor_id, bytes) else repr(actor_id)
        return Reply(request_ref, False, (GcsErrorCode.UNKNOWN_ACTOR, f"Actor {shown} does not exist"))

    # ------------------------------------------------------ lease protocol ---
    def _lease_granted(self, ev: LeaseGrantedEvent, now, out):
        actor = self._actors.get(self._by_request.pop(ev.request_id, None))
        if actor is None or actor.lease_request is None or actor.lease_request[1] != ev.request_id:
            out.append(ReturnLease(ev.node_id, ev.lease_id))
            return
        requested_node = actor.lease_request[0]
        actor.lease_request = None
        actor.lease_failures = 0
        # KillWorker must reach the raylet that hosts the worker.
        actor.node_id = ev.node_id if ev.node_id in self._nodes else requested_node
        actor.worker_id, actor.lease_id = ev.worker_id, ev.lease_id
        actor.worker_endpoint = ev.worker_endpoint
        self._by_worker[ev.worker_id] = actor.actor_id
        out.append(SaveActor(actor.record()))   # a restarted GCS can then free the worker
        creation_task = actor.creation_task
        extra = {}
        if ev.gpu_ids:   # this lease's devices: the actor sets CUDA_VISIBLE_DEVICES from them
            extra["gpu_ids"] = tuple(ev.gpu_ids)
        if actor.num_restarts:
            extra["num_restarts"] = actor.num_restarts
        if extra:
            creation_task = _with_options(creation_task, **extra)
        out.append(PushCreationTask(actor.actor_id, ev.worker_endpoint, creation_task))

    def _lease_failed(self, ev: LeaseFailedEvent, now, out):
        actor = self._actors.get(self._by_request.pop(ev.request_id, None))
        if actor is None or actor.lease_request is None or actor.lease_request[1] != ev.request_id:
            return
        actor.lease_request = None
        actor.lease_failures += 1
        if actor.lease_failures >= MAX_LEASE_FAILURES:
            self._die(actor, f"The actor could not be scheduled: {ev.message}", out)
            return
        delay = min(LEASE_RETRY_BASE_S * 2 ** (actor.lease_failures - 1), LEASE_RETRY_CAP_S)
        self._backoff[actor.actor_id] = now + delay
        out.append(Warn(f"lease for actor {actor.actor_id.hex()} ({actor.class_name}) failed "
                        f"(code {ev.error_code}: {ev.message}); retrying in {delay:.1f}s"))

    def _creation_replied(self, ev: CreationTaskRepliedEvent, now, out):
        actor = self._actors.get(ev.actor_id)
        if (actor is None or actor.state not in (PENDING_CREATION, RESTARTING)
                or actor.worker_endpoint != ev.worker_endpoint):
            return   # a stale reply from a worker this actor already left
        errors = [data for kind, data in ev.returns if kind == ReturnKind.ERROR]
        if errors:
            # A constructor that called exit_actor() leaves by itself after its
            # atexit handlers: a graceful kill only bounds how long that takes.
            self._stop_placement(actor, out, kill_message=CREATION_ERROR_MESSAGE,
                                 graceful=ev.status == TaskStatus.EXITING)
            self._die(actor, CREATION_ERROR_MESSAGE, out, creation_error=errors[0])
        elif ev.status == TaskStatus.OK:
            out.append(CloseWorkerChannel(actor.worker_endpoint))
            actor.state, actor.endpoint = ALIVE, actor.worker_endpoint
            out.append(PublishActor(actor.record()))
            self._release_waiters(actor, out)
        elif ev.status == TaskStatus.REQUEUE:
            # The worker gave the creation task back unstarted: place it anew.
            self._stop_placement(actor, out, kill_message="creation task requeued")
            self._schedule(actor, out)
        else:
            self._stop_placement(actor, out, kill_message="creation task failed")
            self._worker_lost(actor, "The actor's creation task failed with a system error", out)

    def _worker_died(self, ev: WorkerDiedEvent, now, out):
        actor = self._actors.get(self._by_worker.get(ev.worker_id))
        if actor is not None and actor.state != DEAD:
            self._stop_placement(actor, out, kill_message=None)
            if ev.intended:   # exit_actor() or __ray_terminate__: not a crash, no restart
                self._die(actor, INTENDED_EXIT_MESSAGE, out)
            else:
                self._worker_lost(
                    actor, f"The actor died because its worker process died: {ev.message}", out)
        # Non-detached actors die with the worker that created them (Ray's owner rule).
        for owned in [a for a in self._actors.values()
                      if a.owner_id == ev.worker_id and not a.detached and a.state != DEAD]:
            message = f"{OWNER_DIED_MESSAGE} Owner worker: {ev.worker_id.hex()}."
            self._stop_placement(owned, out, kill_message=message)
            self._die(owned, message, out)

    # -------------------------------------------------------------- nodes ---
    def _node_added(self, ev: NodeAddedEvent, now, out):
        self._nodes[ev.node_id] = (dict(ev.total), dict(ev.available))
        self._retry_infeasible(out)

    def _node_resources(self, ev: NodeResourcesEvent, now, out):
        known = self._nodes.get(ev.node_id)
        if known is None:
            return
        self._nodes[ev.node_id] = (dict(ev.total), dict(ev.available))
        if known[0] != ev.total:
            self._retry_infeasible(out)

    def _node_died(self, ev: NodeDiedEvent, now, out):
        if self._nodes.pop(ev.node_id, None) is None:
            return
        for actor in list(self._actors.values()):
            if actor.lease_request is not None and actor.lease_request[0] == ev.node_id:
                self._by_request.pop(actor.lease_request[1], None)
                actor.lease_request = None
                self._schedule(actor, out)          # nothing ran there yet: no restart used
            elif actor.node_id == ev.node_id and actor.worker_id and actor.state != DEAD:
                self._stop_placement(actor, out, kill_message=None)
                self._worker_lost(actor, f"The actor died because its node died: {ev.message}", out)

    def _tick(self, ev: TickEvent, now, out):
        for actor_id in [a for a, due in self._backoff.items() if due <= now]:
            del self._backoff[actor_id]
            self._schedule(self._actors[actor_id], out)

    def _retry_infeasible(self, out):
        waiting, self._infeasible = list(self._infeasible), {}
        for actor_id in waiting:
            self._schedule(self._actors[actor_id], out)

    # ---------------------------------------------------------- internals ---
    def _pick_node(self, resources: dict):
        fits_in_total = None
        for node_id, (total, available) in self._nodes.items():
            if not _fits(total, resources):
                continue
            if _fits(available, resources):
                return node_id
            if fits_in_total is None:
                fits_in_total = node_id
        return fits_in_total

    def _schedule(self, actor: _Actor, out):
        # DESIGN.md section 6: a default actor ({}) needs 1 CPU to be placed, 0 to run;
        # the raylet applies the same rule, so both agree on what fits.
        need = actor.resources or DEFAULT_ACTOR_PLACEMENT
        if actor.node_affinity:
            target, soft = actor.node_affinity
            if target in self._nodes:
                node_id = target if _fits(self._nodes[target][0], need) else None
            elif soft:
                node_id = self._pick_node(need)
            else:
                self._die(actor, UNSCHEDULABLE_MESSAGE, out)
                return
        else:
            node_id = self._pick_node(need)
        if node_id is None:
            self._infeasible[actor.actor_id] = None
            if not actor.warned_infeasible:
                actor.warned_infeasible = True
                out.append(Warn(
                    f"Actor {actor.actor_id.hex()} ({actor.class_name}) requires "
                    f"{actor.resources or DEFAULT_ACTOR_PLACEMENT} for placement but no alive node has that much in "
                    f"total; it stays pending until a node that fits joins the cluster"))
            return
        request_id = self._next_request_id
        self._next_request_id += 1
        actor.lease_request = (node_id, request_id)
        self._by_request[request_id] = actor.actor_id
        # Count the request against the node's view until its next report, so a
        # burst of creations spreads instead of piling onto one node.
        available = self._nodes[node_id][1]
        for name, amount in actor.resources.items():
            available[name] = available.get(name, 0) - amount
        out.append(RequestLease(node_id, request_id, actor.resources, actor.actor_id, actor.job_id,
                                tuple(actor.runtime_env or ())))

    def _clear_worker(self, actor: _Actor):
        actor.node_id = actor.worker_id = actor.lease_id = None
        actor.worker_endpoint = actor.endpoint = None

    def _stop_placement(self, actor: _Actor, out, kill_message: Optional[str],
                        graceful: bool = False):
        """Drop the actor's lease request and worker (killing it if kill_message;
        ``graceful``: SIGTERM, so it ends after its calls, running __ray_shutdown__
        and atexit handlers, as Ray's actors do when their handles are gone or
        their job ends; SIGKILL if it has not left after a while)."""
        self._infeasible.pop(actor.actor_id, None)
        self._backoff.pop(actor.actor_id, None)
        if actor.lease_request is not None:
            node_id, request_id = actor.lease_request
            self._by_request.pop(request_id, None)
            actor.lease_request = None
            if node_id in self._nodes:
                out.append(CancelLease(node_id, request_id))
        if actor.worker_id is not None:
            self._by_worker.pop(actor.worker_id, None)
            if actor.state != ALIVE:   # creation was pushed and not settled
                out.append(CloseWorkerChannel(actor.worker_endpoint))
            if kill_message is not None and actor.node_id in self._nodes:
                out.append(KillWorker(actor.node_id, actor.worker_id, kill_message, graceful))
        self._clear_worker(actor)

    def _worker_lost(self, actor: _Actor, message: str, out):
        """The actor's worker is gone (placement already stopped)."""
        if actor.restarts_left():
            self._restart(actor, out)
        else:
            self._die(actor, message, out)

    def _restart(self, actor: _Actor, out):
        actor.num_restarts += 1
        actor.state = RESTARTING
        out.append(PublishActor(actor.record()))
        self._schedule(actor, out)

    def _die(self, actor: _Actor, message: str, out, creation_error: Optional[bytes] = None):
        self._stop_placement(actor, out, kill_message=None)
        actor.state, actor.death_message, actor.creation_error = DEAD, message, creation_error
        if actor.name and self._named.get((actor.namespace, actor.name)) == actor.actor_id:
            del self._named[(actor.namespace, actor.name)]
        out.append(PublishActor(actor.record()))
        self._release_waiters(actor, out)

    def _release_waiters(self, actor: _Actor, out):
        waiters, actor.waiters = actor.waiters, []
        info = actor.info()
        out.extend(Reply(ref, True, info) for ref in waiters)
