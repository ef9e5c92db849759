"""The GCS placement-group manager: pure state machine, actions out.

DESIGN.md section 8.  A group's bundles are reserved atomically with a
two-phase commit driven from here:

    PENDING --place--> prepare on every chosen raylet --all ok--> commit on
    each --all acked--> CREATED          (any prepare refused: the prepared
                                          ones are returned, retry later)

Placement uses the raylets' last reported availability (strategies PACK,
SPREAD, STRICT_PACK, STRICT_SPREAD); a raylet's prepare is the authority, so
a stale view only costs a retry.  A committed bundle shows up on its node as
Ray-named resources (zray.bundle_resources) that tasks and actors in the
group ask for.  Removal returns the bundles (the raylets end the workers that
run in them) and kills the group's actors.  A group that is not detached is
removed with its creator: the job, or the actor that created it.  Bundles on
a node that dies are placed again (RESCHEDULING) before any pending group.

No sockets, no clock: entry points take ``now`` and return actions for the
server (zray.gcs.server) to carry out in order.
"""
from __future__ import annotations

import logging
from typing import Any, NamedTuple, Optional

from zray.gcs.actor_events import Reply, Warn
from zray.gcs.errors import GcsErrorCode

log = logging.getLogger("zray.gcs")

PENDING = "PENDING"
CREATED = "CREATED"
REMOVED = "REMOVED"
RESCHEDULING = "RESCHEDULING"
STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
RETRY_S = 0.1              # a refused placement is tried again after the next reports
_EPSILON = 1e-9


# ----------------------------------------------------------------- actions ---
class PrepareBundles(NamedTuple):
    node_id: bytes
    pg_id: bytes
    attempt: int
    bundles: tuple          # ((index, {resource: amount}), ...)


class CommitBundles(NamedTuple):
    node_id: bytes
    pg_id: bytes
    attempt: int
    indices: tuple


class ReturnBundles(NamedTuple):
    """Cancel a prepare or release committed bundles (the raylet ends their workers)."""
    node_id: bytes
    pg_id: bytes
    indices: tuple


class ReleaseUnusedBundles(NamedTuple):
    """After a restart: the raylet returns every bundle but those in ``keep``."""
    node_id: bytes
    keep: tuple             # ((pg_id, index), ...) committed there, per the table


class SaveGroup(NamedTuple):
    record: dict


class GroupRemoved(NamedTuple):
    """The group's actors must die (the actor manager's part)."""
    pg_id: bytes


class _Attempt:
    """One round of the two-phase commit."""
    __slots__ = ("number", "placement", "waiting", "prepared", "refused", "committing")

    def __init__(self, number: int, placement: dict):
        self.number = number
        self.placement = placement             # bundle index -> node id
        self.waiting = set(placement.values())  # nodes that have not answered this phase
        self.prepared: set = set()
        self.refused: list = []                 # raylets' reasons
        self.committing = False

    def nodes(self) -> dict:
        """node id -> indices placed there."""
        by_node: dict = {}
        for index, node_id in sorted(self.placement.items()):
            by_node.setdefault(node_id, []).append(index)
        return by_node


def _fits(available: dict, need: dict) -> bool:
    return all(available.get(name, 0.0) + _EPSILON >= amount
               for name, amount in need.items() if amount)


def _take(available: dict, need: dict) -> None:
    for name, amount in need.items():
        available[name] = available.get(name, 0.0) - amount


def _sum(bundles) -> dict:
    total: dict = {}
    for bundle in bundles:
        for name, amount in bundle.items():
            total[name] = total.get(name, 0.0) + amount
    return total


class PlacementGroupManager:
    def __init__(self, alive_nodes):
        """``alive_nodes()`` -> {node_id: (total, available)} of the raylets' last reports."""
        self._alive_nodes = alive_nodes
        self._groups: dict[bytes, dict] = {}
        self._named: dict[tuple, bytes] = {}     # (namespace, name) -> group not REMOVED
        self._queue: list = []                   # groups to place, oldest first
        self._attempts: dict[bytes, _Attempt] = {}
        self._waiters: dict[bytes, list] = {}    # pg_id -> [(request_ref, deadline or None)]
        self._retry_at = 0.0
        self._warned: set = set()

    # ------------------------------------------------------------ queries ---
    def get(self, pg_id: bytes):
        record = self._groups.get(pg_id)
        return dict(record) if record else None

    def get_by_name(self, name: str, namespace: str):
        pg_id = self._named.get((namespace, name))
        return self.get(pg_id) if pg_id else None

    def all_groups(self) -> list:
        return [dict(record) for record in self._groups.values()]

    # ------------------------------------------------------------ restore ---
    def restore(self, records: dict, alive_node_ids) -> list:
        """Reload persisted groups.  Committed bundles live on in their raylets;
        a group caught mid-commit is placed anew.  Each alive raylet is told
        which of its bundles the table knows: it returns the others (prepared by
        an interrupted commit, or of a group whose removal was not delivered)
        before it sees any new prepare (one ordered channel per raylet)."""
        keep: dict = {node_id: [] for node_id in alive_node_ids}
        for pg_id, record in records.items():
            self._groups[pg_id] = record
            if record["state"] == REMOVED:
                continue
            if record.get("name"):
                self._named[(record["namespace"], record["name"])] = pg_id
            if record["state"] != CREATED:
                self._queue.append(pg_id)
            for index, node_id in enumerate(record["bundle_nodes"]):
                if node_id in keep:
                    keep[node_id].append((pg_id, index))
        return [ReleaseUnusedBundles(node_id, tuple(kept)) for node_id, kept in keep.items()]

    # ----------------------------------------------------------- requests ---
    def create(self, ref, spec: dict, now: float) -> list:
        out: list = []
        problem = _check_spec(spec)
        if problem:
            out.append(Reply(ref, False, (GcsErrorCode.BAD_REQUEST, problem)))
            return out
        pg_id = spec["pg_id"]
        if pg_id in self._groups:      # a client retrying after a lost reply
            out.append(Reply(ref, True, None))
            return out
        name, namespace = spec.get("name") or "", spec.get("namespace") or ""
        if name:
            if (namespace, name) in self._named:
                out.append(Reply(ref, False, (GcsErrorCode.BAD_REQUEST, (
                    f"Failed to create placement group: the name {name!r} is already taken "
                    f"in namespace {namespace!r}"))))
                return out
            self._named[(namespace, name)] = pg_id
        bundles = [{str(k): float(v) for k, v in bundle.items()} for bundle in spec["bundles"]]
        record = {
            "pg_id": pg_id, "name": name, "namespace": namespace, "bundles": bundles,
            "strategy": spec["strategy"], "state": PENDING,
            "bundle_nodes": [None] * len(bundles), "detached": bool(spec.get("detached")),
            "job_id": spec.get("job_id"), "creator_actor_id": spec.get("creator_actor_id"),
            "scheduling_attempts": 0, "created_at": now,
        }
        self._groups[pg_id] = record
        out.append(SaveGroup(dict(record)))
        out.append(Reply(ref, True, None))
        self._queue.append(pg_id)
        self._place_queued(now, out)
        return out

    def remove(self, ref, pg_id: bytes, now: float) -> list:
        out: list = []
        record = self._groups.get(pg_id)
        if record is None:
            out.append(Reply(ref, False, (GcsErrorCode.BAD_REQUEST,
                                          f"placement group {_hex(pg_id)} does not exist")))
            return out
        self._remove(record, out)
        out.append(Reply(ref, True, None))
        return out

    def wait_ready(self, ref, pg_id: bytes, timeout_s: Optional[float], now: float) -> list:
        """Replies True once the group is CREATED, False at the deadline, an
        error if it does not exist or is removed."""
        out: list = []
        record = self._groups.get(pg_id)
        if record is None:
            out.append(Reply(ref, False, (GcsErrorCode.BAD_REQUEST,
                                          f"placement group {_hex(pg_id)} does not exist")))
        elif record["state"] == CREATED:
            out.append(Reply(ref, True, True))
        elif record["state"] == REMOVED:
            out.append(Reply(ref, False, (GcsErrorCode.BAD_REQUEST, _removed_message(pg_id))))
        elif timeout_s is not None and timeout_s <= 0:
            out.append(Reply(ref, True, False))
        else:
            deadline = None if timeout_s is None else now + float(timeout_s)
            self._waiters.setdefault(pg_id, []).append((ref, deadline))
        return out

    # ------------------------------------------------------- raylet replies ---
    def on_prepared(self, node_id: bytes, pg_id: bytes, attempt: int, ok: bool, message: str,
                    now: float) -> list:
        out: list = []
        current = self._attempts.get(pg_id)
        if current is None or current.number != attempt or current.committing \
                or node_id not in current.waiting:
            return out   # a stale answer: abandoning that attempt already returned its bundles
        current.waiting.discard(node_id)
        if ok:
            current.prepared.add(node_id)
        else:
            current.refused.append(message)
        if not current.waiting:
            self._after_prepare(self._groups[pg_id], current, now, out)
        return out

    def on_committed(self, node_id: bytes, pg_id: bytes, attempt: int, now: float) -> list:
        out: list = []
        current = self._attempts.get(pg_id)
        if current is None or current.number != attempt or not current.committing:
            return out
        current.waiting.discard(node_id)
        if not current.waiting:
            self._after_commit(self._groups[pg_id], current, out)
        return out

    # ------------------------------------------------------------- events ---
    def on_node_died(self, node_id: bytes, now: float) -> list:
        out: list = []
        for pg_id, current in list(self._attempts.items()):
            if node_id in current.placement.values():
                # Give back what the other raylets reserved; place the group again.
                self._abandon(pg_id, current, out)
                self._requeue(pg_id, front=True)
        for record in self._groups.values():
            if record["state"] == CREATED and node_id in record["bundle_nodes"]:
                record["bundle_nodes"] = [None if n == node_id else n
                                          for n in record["bundle_nodes"]]
                record["state"] = RESCHEDULING
                out.append(SaveGroup(dict(record)))
                self._requeue(record["pg_id"], front=True)
        self._place_queued(now, out)
        return out

    def on_job_finished(self, job_id: bytes) -> list:
        out: list = []
        for record in list(self._groups.values()):
            if (record["job_id"] == job_id and not record["detached"]
                    and record["creator_actor_id"] is None):
                self._remove(record, out)
        return out

    def on_actor_dead(self, actor_id: bytes) -> list:
        out: list = []
        for record in list(self._groups.values()):
            if record["creator_actor_id"] == actor_id and not record["detached"]:
                self._remove(record, out)
        return out

    def tick(self, now: float) -> list:
        out: list = []
        for pg_id, waiters in list(self._waiters.items()):
            due = [w for w in waiters if w[1] is not None and w[1] <= now]
            if due:
                out.extend(Reply(ref, True, False) for ref, _ in due)
                self._waiters[pg_id] = [w for w in waiters if w not in due]
        if self._queue and now >= self._retry_at:
            self._place_queued(now, out)
        return out

    # ---------------------------------------------------------- internals ---
    def _requeue(self, pg_id: bytes, front: bool = False) -> None:
        if pg_id in self._queue:
            self._queue.remove(pg_id)
        if front:
            self._queue.insert(0, pg_id)
        else:
            self._queue.append(pg_id)

    def _place_queued(self, now: float, out: list) -> None:
        """Start an attempt for every queued group that fits the current view."""
        nodes = {node_id: (total, dict(available))
                 for node_id, (total, available) in self._alive_nodes().items()}
        still_waiting = []
        for pg_id in self._queue:
            record = self._groups.get(pg_id)
            if record is None or record["state"] == REMOVED or pg_id in self._attempts:
                continue
            placement = _place(record, nodes)
            if placement is None:
                still_waiting.append(pg_id)
                self._warn_if_infeasible(record, nodes, out)
                continue
            record["scheduling_attempts"] += 1
            attempt = _Attempt(record["scheduling_attempts"], placement)
            self._attempts[pg_id] = attempt
            for node_id, indices in attempt.nodes().items():
                out.append(PrepareBundles(node_id, pg_id, attempt.number, tuple(
                    (i, dict(record["bundles"][i])) for i in indices)))
        self._queue = still_waiting
        if still_waiting:
            self._retry_at = now + RETRY_S

    def _warn_if_infeasible(self, record: dict, nodes: dict, out: list) -> None:
        pg_id = record["pg_id"]
        if pg_id in self._warned:
            return
        totals = {node_id: (total, dict(total)) for node_id, (total, _) in nodes.items()}
        if _place(record, totals) is None:
            self._warned.add(pg_id)
            out.append(Warn(f"placement group {_hex(pg_id)} ({record['strategy']}, bundles "
                            f"{record['bundles']}) cannot be placed on the alive nodes even "
                            f"when they are idle; it stays pending until nodes that fit join"))

    def _after_prepare(self, record: dict, current: _Attempt, now: float, out: list) -> None:
        if current.refused:
            log.info("placement group %s: prepare refused (%s); retrying",
                     _hex(record["pg_id"]), "; ".join(current.refused))
            self._abandon(record["pg_id"], current, out)
            self._requeue(record["pg_id"], front=record["state"] == RESCHEDULING)
            self._retry_at = now + RETRY_S
            return
        current.committing = True
        current.waiting = set(current.prepared)
        for node_id, indices in current.nodes().items():
            out.append(CommitBundles(node_id, record["pg_id"], current.number, tuple(indices)))

    def _after_commit(self, record: dict, current: _Attempt, out: list) -> None:
        del self._attempts[record["pg_id"]]
        nodes = list(record["bundle_nodes"])
        for index, node_id in current.placement.items():
            nodes[index] = node_id
        record["bundle_nodes"] = nodes
        record["state"] = CREATED
        out.append(SaveGroup(dict(record)))
        out.extend(Reply(ref, True, True) for ref, _ in self._waiters.pop(record["pg_id"], ()))

    def _abandon(self, pg_id: bytes, current: _Attempt, out: list) -> None:
        """Drop an attempt, returning whatever its raylets may have reserved."""
        self._attempts.pop(pg_id, None)
        for node_id, indices in current.nodes().items():
            out.append(ReturnBundles(node_id, pg_id, tuple(indices)))

    def _remove(self, record: dict, out: list) -> None:
        pg_id = record["pg_id"]
        if record["state"] == REMOVED:
            return
        current = self._attempts.get(pg_id)
        if current is not None:
            self._abandon(pg_id, current, out)
        by_node: dict = {}
        for index, node_id in enumerate(record["bundle_nodes"]):
            if node_id is not None:
                by_node.setdefault(node_id, []).append(index)
        for node_id, indices in by_node.items():
            out.append(ReturnBundles(node_id, pg_id, tuple(indices)))
        if pg_id in self._queue:
            self._queue.remove(pg_id)
        record["state"] = REMOVED
        if record["name"] and self._named.get((record["namespace"], record["name"])) == pg_id:
            del self._named[(record["namespace"], record["name"])]
        out.append(SaveGroup(dict(record)))
        out.append(GroupRemoved(pg_id))
        message = _removed_message(pg_id)
        out.extend(Reply(ref, False, (GcsErrorCode.BAD_REQUEST, message))
                   for ref, _ in self._waiters.pop(pg_id, ()))


def _place(record: dict, nodes: dict) -> Optional[dict]:
    """bundle index -> node id for the group's unplaced bundles, taking their
    resources out of ``nodes``' available copies; None if they do not fit now."""
    bundles = record["bundles"]
    todo = [i for i, node_id in enumerate(record["bundle_nodes"]) if node_id is None]
    used = {n for n in record["bundle_nodes"] if n is not None}
    strategy = record["strategy"]
    work = {node_id: dict(available) for node_id, (_, available) in nodes.items()}
    placement: dict = {}
    if strategy in ("PACK", "STRICT_PACK"):
        need = _sum(bundles[i] for i in todo)
        candidates = [n for n in (used or work) if n in work and _fits(work[n], need)]
        if candidates:
            # Pack: the node with the least left over after taking the group.
            node_id = min(candidates, key=lambda n: sum(work[n].values()))
            placement = {i: node_id for i in todo}
        elif strategy == "STRICT_PACK":
            return None
        else:
            for i in todo:
                order = sorted(work, key=lambda n: (n not in used, n))
                node_id = next((n for n in order if _fits(work[n], bundles[i])), None)
                if node_id is None:
                    return None
                _take(work[node_id], bundles[i])
                used.add(node_id)
                placement[i] = node_id
    else:
        counts: dict = {}
        for n in record["bundle_nodes"]:
            if n is not None:
                counts[n] = counts.get(n, 0) + 1
        for i in todo:
            fitting = [n for n in work if _fits(work[n], bundles[i])]
            if strategy == "STRICT_SPREAD":
                fitting = [n for n in fitting if not counts.get(n)]
            if not fitting:
                return None
            node_id = min(fitting, key=lambda n: (counts.get(n, 0), n))
            _take(work[node_id], bundles[i])
            counts[node_id] = counts.get(node_id, 0) + 1
            placement[i] = node_id
    for i, node_id in placement.items():
        _take(nodes[node_id][1], bundles[i])
    return placement


def _check_spec(spec: Any) -> str:
    if not isinstance(spec, dict):
        return f"CREATE_PLACEMENT_GROUP needs a dict, got {type(spec).__name__}"
    if not isinstance(spec.get("pg_id"), bytes):
        return "CREATE_PLACEMENT_GROUP needs pg_id bytes"
    if spec.get("strategy") not in STRATEGIES:
        return f"unknown placement strategy {spec.get('strategy')!r}; valid: {', '.join(STRATEGIES)}"
    bundles = spec.get("bundles")
    if not isinstance(bundles, (list, tuple)) or not bundles:
        return "bundles must be a non-empty list of resource dicts"
    for bundle in bundles:
        if not isinstance(bundle, dict) or not bundle or not all(
                isinstance(k, str) and isinstance(v, (int, float)) and v >= 0
                for k, v in bundle.items()):
            return f"bad bundle {bundle!r}: a dict of resource name -> non-negative amount"
    return ""


def _hex(pg_id) -> str:
    return pg_id.hex() if isinstance(pg_id, bytes) else repr(pg_id)


def _removed_message(pg_id: bytes) -> str:
    return f"Placement group {_hex(pg_id)} was removed"
