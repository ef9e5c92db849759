"""GcsService: what the GCS decides and stores, behind the socket shell.

Owns the GcsTables (writes go through before any reply is returned), the
NodeManager, the ActorManager and the PlacementGroupManager.  No sockets and no clock: every entry point
takes ``now`` and returns actions for the server (zray.gcs.server) to carry
out in order - the actor manager's (zray.gcs.actor_events) after this module
has persisted them, plus its own below.  SaveActor / PublishActor never leave
this module: they become a table write (and a Publish).

Requests: ``request(ref, method, args, now)`` checks the method and the
arguments against the handler's signature, so an unknown method or a wrong
arity is a BAD_REQUEST reply naming the problem, never an exception.
"""
from __future__ import annotations

import inspect
import logging
import time
from typing import NamedTuple

from zray.gcs import actor_events as ae
from zray.gcs.actor_manager import ActorManager
from zray.gcs.errors import GcsError, GcsErrorCode
from zray.gcs import placement_groups as pgm
from zray.gcs.node_manager import NodeManager
from zray.gcs.task_events import TaskEventStore
from zray.gcs.tables import ACTORS, JOBS, NODES, PLACEMENT_GROUPS, GcsTables
from zray.ids import job_id_from_int
from zray.sockets import messages as msg
from zray.sockets.messages import GcsMethod

log = logging.getLogger("zray.gcs")

RESOURCE_VIEW_PERIOD_S = 0.1


class Publish(NamedTuple):
    topic: bytes
    message: tuple


class ConnectRaylet(NamedTuple):
    node_id: bytes
    endpoint: str


class DisconnectRaylet(NamedTuple):
    node_id: bytes


MAX_REMEMBERED_DEAD_WORKERS = 100_000


class GcsService:
    def __init__(self, tables: GcsTables, node_timeout_s: float):
        self._tables = tables
        self._nodes = NodeManager(node_timeout_s)
        self._actors = ActorManager()
        self._groups = pgm.PlacementGroupManager(self._nodes.alive_view)
        self._task_events = TaskEventStore()
        self._methods = self._method_table()
        self._signatures = {m: inspect.signature(h) for m, h in self._methods.items()}
        self._ignored_reporters: set = set()
        self._dead_workers: dict = {}   # worker_id -> death message (bounded, oldest first out)
        self._last_view = float("-inf")
        self._now = 0.0
        self._out: list = []         # actions of the entry point being handled

    # --------------------------------------------------------- entry points ---
    def restore(self, now: float) -> list:
        """Reload the tables of a previous run (nodes first, so pending actors
        can be placed and workers leased before the restart can be freed)."""
        self._begin(now)
        alive = self._nodes.restore(self._tables.load(NODES), now)
        for record in alive:
            self._out.append(ConnectRaylet(record["node_id"], record["raylet_endpoint"]))
        self._absorb(self._actors.restore(self._tables.load(ACTORS)))
        self._absorb_groups(self._groups.restore(self._tables.load(PLACEMENT_GROUPS),
                                                 [r["node_id"] for r in alive]))
        for record in alive:
            self._actor_event(ae.NodeAddedEvent(record["node_id"], record["resources_total"],
                                                record["resources_available"]))
        log.info("reloaded %d alive node(s) from %s", len(alive), self._tables.path)
        return self._out

    def request(self, ref, method: int, args, now: float) -> list:
        self._begin(now)
        try:
            name = GcsMethod(method).name
        except ValueError:
            return self._fail(ref, GcsErrorCode.BAD_REQUEST, f"unknown GCS method {method!r}")
        try:
            if not isinstance(args, (tuple, list)):
                raise TypeError(f"args must be a tuple, got {type(args).__name__}")
            self._signatures[method].bind(ref, *args)
        except TypeError as exc:
            return self._fail(ref, GcsErrorCode.BAD_REQUEST, f"{name}: wrong arguments {args!r}: {exc}")
        try:
            result = self._methods[method](ref, *args)
        except GcsError as exc:
            return self._fail(ref, exc.code, exc.message)
        except (TypeError, ValueError, KeyError) as exc:
            log.warning("bad %s request: %s", name, exc)
            return self._fail(ref, GcsErrorCode.BAD_REQUEST, f"{name}: {exc}")
        except Exception as exc:
            log.exception("%s failed", name)
            return self._fail(ref, GcsErrorCode.INTERNAL, f"{name} failed: {exc!r}")
        if result is not _DEFERRED:
            self._out.append(ae.Reply(ref, True, result))
        return self._out

    def report_resources(self, report: msg.ReportResources, now: float) -> list:
        """A raylet's periodic report, which is also its heartbeat."""
        self._begin(now)
        self._resources_reported(report.node_id, report.available, report.total, now)
        return self._out

    def _resources_reported(self, node_id: bytes, available: dict, total: dict, now: float) -> None:
        if self._nodes.report(node_id, available, total, now):
            self._actor_event(ae.NodeResourcesEvent(node_id, total, available))
        elif node_id not in self._ignored_reporters:
            self._ignored_reporters.add(node_id)
            log.warning("ignoring resource reports from unregistered or dead node %r", node_id)

    def worker_died(self, report: msg.WorkerDied, now: float) -> list:
        """Any worker or driver death: owners' borrowers learn it on topic W<id>."""
        self._begin(now)
        self._dead_workers[report.worker_id] = report.message
        self._task_events.worker_died(report.worker_id, report.message)
        if len(self._dead_workers) > MAX_REMEMBERED_DEAD_WORKERS:
            self._dead_workers.pop(next(iter(self._dead_workers)))
        self._out.append(Publish(msg.worker_topic(report.worker_id), report))
        self._actor_event(ae.WorkerDiedEvent(report.worker_id, report.message, bool(report.intended)))
        return self._out

    def actor_event(self, event, now: float) -> list:
        """Lease replies, creation-task replies and worker deaths from the wire."""
        self._begin(now)
        self._actor_event(event)
        return self._out

    def bundles_prepared(self, node_id: bytes, reply: msg.BundlesPrepared, now: float) -> list:
        self._begin(now)
        self._absorb_groups(self._groups.on_prepared(node_id, reply.pg_id, reply.attempt,
                                                     bool(reply.ok), str(reply.message), now))
        return self._out

    def bundles_committed(self, node_id: bytes, reply: msg.BundlesCommitted, now: float) -> list:
        self._begin(now)
        self._resources_reported(node_id, reply.available, reply.total, now)
        self._absorb_groups(self._groups.on_committed(node_id, reply.pg_id, reply.attempt, now))
        return self._out

    def tick(self, now: float) -> list:
        """Health check, lease and placement retries, and the throttled resource view."""
        self._begin(now)
        for node_id in self._nodes.expire(now):
            self._node_died(node_id, f"no heartbeat for {self._nodes.node_timeout_s}s")
        self._actor_event(ae.TickEvent())
        self._absorb_groups(self._groups.tick(now))
        if self._nodes.dirty and now - self._last_view >= RESOURCE_VIEW_PERIOD_S:
            self._last_view = now
            self._out.append(Publish(msg.RESOURCE_TOPIC,
                                     msg.ResourceView(self._nodes.take_resource_view())))
        return self._out

    # ------------------------------------------------------------ plumbing ---
    def _begin(self, now: float) -> None:
        self._now, self._out = now, []

    def _fail(self, ref, code: int, message: str) -> list:
        self._out.append(ae.Reply(ref, False, (int(code), message)))
        return self._out

    def _actor_event(self, event) -> None:
        self._absorb(self._actors.handle(event, self._now))

    def _absorb(self, actions: list) -> None:
        """Persist the actor manager's records; pass the rest on."""
        for action in actions:
            kind = type(action)
            if kind is ae.SaveActor or kind is ae.PublishActor:
                record = action.record
                self._tables.put(ACTORS, record["actor_id"], record)
                if kind is ae.PublishActor and record["state"] == "DEAD":
                    # Groups an actor created (not detached) go with it.
                    self._absorb_groups(self._groups.on_actor_dead(record["actor_id"]))
                if kind is ae.PublishActor:
                    self._out.append(Publish(msg.actor_topic(record["actor_id"]), msg.ActorChanged(
                        record["actor_id"], record["state"], record["endpoint"] or "",
                        record["node_id"] or b"", record["worker_id"] or b"",
                        record["death_message"] or "")))
            else:
                self._out.append(action)

    def _absorb_groups(self, actions: list) -> None:
        """Persist the placement-group manager's records; a removed group's
        actors die (the actor manager's part); pass the rest on."""
        for action in actions:
            kind = type(action)
            if kind is pgm.SaveGroup:
                self._tables.put(PLACEMENT_GROUPS, action.record["pg_id"], action.record)
            elif kind is pgm.GroupRemoved:
                self._actor_event(ae.PlacementGroupRemovedEvent(action.pg_id))
            else:
                self._out.append(action)

    def _node_died(self, node_id: bytes, why: str) -> None:
        record = self._nodes.mark_dead(node_id)
        if record is None:
            return
        log.warning("node %s is dead: %s", node_id.hex(), why)
        self._tables.put(NODES, node_id, record)
        self._out.append(Publish(msg.NODE_TOPIC, msg.NodeChanged(dict(record))))
        self._actor_event(ae.NodeDiedEvent(node_id, why))
        self._absorb_groups(self._groups.on_node_died(node_id, self._now))
        self._out.append(DisconnectRaylet(node_id))

    # ------------------------------------------------------------ requests ---
    def _method_table(self) -> dict:
        nodes, actors, tables = self._nodes, self._actors, self._tables
        return {
            GcsMethod.REGISTER_NODE: self._register_node,
            GcsMethod.UNREGISTER_NODE: lambda ref, node_id: self._node_died(
                node_id, "the node was unregistered"),
            GcsMethod.GET_ALL_NODES: lambda ref: nodes.all_nodes(),
            GcsMethod.GET_CLUSTER_RESOURCES: lambda ref: nodes.cluster_resources(),
            GcsMethod.KV_PUT: self._kv_put,
            GcsMethod.KV_GET: lambda ref, ns, key: tables.kv_get(*_kv_args(ns, key)),
            GcsMethod.KV_DEL: lambda ref, ns, key, del_by_prefix=False: tables.kv_del(
                *_kv_args(ns, key), bool(del_by_prefix)),
            GcsMethod.KV_KEYS: lambda ref, ns, prefix: tables.kv_keys(*_kv_args(ns, prefix)),
            GcsMethod.REGISTER_JOB: self._register_job,
            GcsMethod.JOB_FINISHED: self._job_finished,
            GcsMethod.CREATE_ACTOR: lambda ref, spec: self._deferred(ae.CreateActorEvent(ref, spec)),
            GcsMethod.GET_ACTOR_INFO: lambda ref, actor_id, wait_alive=False: self._deferred(
                ae.GetActorInfoEvent(ref, actor_id, bool(wait_alive))),
            GcsMethod.WAIT_ACTOR_READY: lambda ref, actor_id: self._deferred(
                ae.GetActorInfoEvent(ref, actor_id, True)),
            GcsMethod.GET_NAMED_ACTOR: self._get_named_actor,
            GcsMethod.LIST_NAMED_ACTORS: lambda ref, all_namespaces, namespace:
                actors.list_named(bool(all_namespaces), namespace),
            GcsMethod.KILL_ACTOR: lambda ref, actor_id, no_restart=True: self._deferred(
                ae.KillActorEvent(ref, actor_id, bool(no_restart))),
            GcsMethod.ACTOR_OUT_OF_SCOPE: lambda ref, actor_id: self._actor_event(
                ae.ActorOutOfScopeEvent(actor_id)),
            GcsMethod.GET_WORKER_DEATH: lambda ref, worker_id: self._dead_workers.get(worker_id),
            GcsMethod.CREATE_PLACEMENT_GROUP: lambda ref, spec: self._group_request(
                self._groups.create(ref, spec, self._now)),
            GcsMethod.REMOVE_PLACEMENT_GROUP: lambda ref, pg_id: self._group_request(
                self._groups.remove(ref, pg_id, self._now)),
            GcsMethod.WAIT_PLACEMENT_GROUP_READY: lambda ref, pg_id, timeout_s=None: self._group_request(
                self._groups.wait_ready(ref, pg_id, _timeout_arg(timeout_s), self._now)),
            GcsMethod.GET_PLACEMENT_GROUP: self._get_placement_group,
            GcsMethod.GET_ALL_PLACEMENT_GROUPS: lambda ref: self._groups.all_groups(),
            GcsMethod.GET_ALL_ACTORS: lambda ref: actors.all_info(),
            GcsMethod.GET_ALL_JOBS: lambda ref: list(tables.load(JOBS).values()),
            GcsMethod.ADD_TASK_EVENTS: lambda ref, header, events: self._task_events.add(
                header, events),
            GcsMethod.GET_TASK_EVENTS: lambda ref, job_id=None: self._task_events.all(job_id),
        }

    def _group_request(self, actions: list):
        """The placement-group manager answers with a Reply among its actions."""
        self._absorb_groups(actions)
        return _DEFERRED

    def _get_placement_group(self, ref, pg_id=None, name=None, namespace=""):
        if pg_id is not None:
            return self._groups.get(pg_id)
        if not isinstance(name, str) or not isinstance(namespace, str):
            raise TypeError("GET_PLACEMENT_GROUP needs pg_id bytes or a name and namespace str")
        return self._groups.get_by_name(name, namespace)

    def _deferred(self, event):
        """Hand a request to the actor manager, whose Reply action answers it."""
        self._actor_event(event)
        return _DEFERRED

    def _register_node(self, ref, node):
        record = self._nodes.register(node, self._now)
        node_id = record["node_id"]
        self._tables.put(NODES, node_id, record)
        self._ignored_reporters.discard(node_id)
        self._out.append(ConnectRaylet(node_id, record["raylet_endpoint"]))
        self._out.append(Publish(msg.NODE_TOPIC, msg.NodeChanged(dict(record))))
        self._actor_event(ae.NodeAddedEvent(node_id, record["resources_total"],
                                            record["resources_available"]))
        log.info("node %s registered (%s, %s)", node_id.hex(), record["node_ip"],
                 record["resources_total"])

    def _kv_put(self, ref, namespace, key, value, overwrite):
        if not isinstance(value, bytes):
            raise TypeError(f"KV value must be bytes, got {type(value).__name__}")
        return self._tables.kv_put(*_kv_args(namespace, key), value, bool(overwrite))

    def _register_job(self, ref, info):
        job_int = self._tables.next_job_id()
        job_id = job_id_from_int(job_int)
        record = dict(info or {}, job_id=job_id, job_int=job_int, state="RUNNING",
                      start_time=time.time(), end_time=None)
        self._tables.put(JOBS, job_id, record)
        return job_int

    def _job_finished(self, ref, job_id):
        if isinstance(job_id, int):
            job_id = job_id_from_int(job_id)
        if not isinstance(job_id, bytes):
            raise TypeError(f"job_id must be bytes or int, got {type(job_id).__name__}")
        record = self._tables.get(JOBS, job_id)
        if record is not None:
            record.update(state="FINISHED", end_time=time.time())
            self._tables.put(JOBS, job_id, record)
        self._actor_event(ae.JobFinishedEvent(job_id))
        self._absorb_groups(self._groups.on_job_finished(job_id))

    def _get_named_actor(self, ref, name, namespace):
        info = self._actors.named_info(name, namespace)
        if info is None:
            raise GcsError(GcsErrorCode.NAMED_ACTOR_NOT_FOUND,
                           f"Failed to look up actor with name {name!r} in namespace {namespace!r}")
        return info


_DEFERRED = object()   # a handler's result when the actor manager will Reply later


def _timeout_arg(timeout_s):
    if timeout_s is not None and not isinstance(timeout_s, (int, float)):
        raise TypeError(f"timeout_s must be a number or None, got {type(timeout_s).__name__}")
    return timeout_s


def _kv_args(namespace, key) -> tuple:
    if not isinstance(namespace, str):
        raise TypeError(f"KV namespace must be str, got {type(namespace).__name__}")
    if not isinstance(key, bytes):
        raise TypeError(f"KV key must be bytes, got {type(key).__name__}")
    return namespace, key
