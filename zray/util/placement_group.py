"""Placement groups (Ray's ray.util.placement_group): bundles of resources
reserved atomically, for tasks and actors to run in.

The GCS places and reserves the bundles (zray.gcs.placement_groups, two-phase
commit with the raylets); tasks and actors join a group through
``scheduling_strategy=PlacementGroupSchedulingStrategy(pg, ...)`` (or the
older ``placement_group=`` options), which zray.scheduling turns into the
group's bundle resources.
"""
from __future__ import annotations

import sys
import warnings
from typing import Dict, List, Optional, Union

from .. import exceptions, ids, serialization
from ..core import process_state
from ..scheduling import current_group
from ..sockets.messages import GcsMethod, ReturnKind

VALID_PLACEMENT_GROUP_STRATEGIES = {"PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"}
_GCS_SLACK_S = 5.0      # a wait's GCS request outlives its own deadline by this much


class PlacementGroup:
    """A handle to a placement group (picklable; pass it to tasks and actors)."""

    def __init__(self, id: ids.PlacementGroupID, bundle_cache: Optional[List[Dict]] = None):
        self.id = id
        self.bundle_cache = bundle_cache

    @staticmethod
    def empty() -> "PlacementGroup":
        return PlacementGroup(ids.PlacementGroupID.nil())

    @property
    def is_empty(self) -> bool:
        return self.id.is_nil()

    def ready(self):
        """An ObjectRef that resolves to this group once all its bundles are
        reserved (it raises if the group is removed first)."""
        cw = _worker()
        if self.is_empty:
            return cw.put(self)
        return _ready_ref(cw, self)

    def wait(self, timeout_seconds: Union[float, int] = 30) -> bool:
        """True once the group is created, False if ``timeout_seconds`` pass first."""
        cw = _worker()
        timeout = max(0.0, float(timeout_seconds))
        try:
            return bool(cw.gcs_call(GcsMethod.WAIT_PLACEMENT_GROUP_READY, self.id.binary(), timeout,
                                    timeout=timeout + _GCS_SLACK_S))
        except exceptions.GetTimeoutError:
            return False

    @property
    def bundle_specs(self) -> List[Dict]:
        self._fill_bundle_cache_if_needed()
        return self.bundle_cache

    @property
    def bundle_count(self) -> int:
        self._fill_bundle_cache_if_needed()
        return len(self.bundle_cache)

    def _fill_bundle_cache_if_needed(self) -> None:
        if not self.bundle_cache:
            record = _record(_worker(), self.id.binary())
            self.bundle_cache = [dict(b) for b in record["bundles"]] if record else []

    def __eq__(self, other):
        return isinstance(other, PlacementGroup) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"PlacementGroup({self.id.hex()})"


def placement_group(bundles: List[Dict[str, float]], strategy: Optional[str] = None, name: str = "",
                    lifetime: Optional[str] = None, _soft_target_node_id: Optional[str] = None,
                    bundle_label_selector: Optional[List[Dict[str, str]]] = None) -> PlacementGroup:
    """Reserve ``bundles`` (a list of {resource: amount}) placed by ``strategy``
    (PACK, SPREAD, STRICT_PACK or STRICT_SPREAD).  Returns at once; ``ready()``
    or ``wait()`` tell when the reservation is made.  Unless ``lifetime`` is
    "detached" the group goes away with its creator (the job, or the actor
    that created it)."""
    strategy = "PACK" if strategy is None else strategy
    validate_placement_group(bundles, strategy, lifetime, _soft_target_node_id, bundle_label_selector)
    cw = _worker()
    pg_id = ids.random_unique_id()
    spec = {"pg_id": pg_id, "bundles": [dict(b) for b in bundles], "strategy": strategy,
            "name": name or "", "namespace": cw.current_namespace(),
            "detached": lifetime == "detached", "job_id": _job_id(cw),
            "creator_actor_id": cw.actor_id}
    try:
        cw.gcs_call(GcsMethod.CREATE_PLACEMENT_GROUP, spec)
    except Exception as exc:   # the GCS names the problem (a taken name, ...)
        raise ValueError(str(getattr(exc, "message", exc))) from None
    _warn_if_infeasible(cw, bundles, strategy)
    return PlacementGroup(ids.PlacementGroupID(pg_id),
                          bundle_cache=[{k: float(v) for k, v in b.items()} for b in bundles])


def remove_placement_group(placement_group: PlacementGroup) -> None:
    """Release the group's bundles; the tasks and actors running in it end."""
    if not isinstance(placement_group, PlacementGroup):
        raise TypeError(f"remove_placement_group needs a PlacementGroup, got "
                        f"{type(placement_group).__name__}")
    _worker().gcs_call(GcsMethod.REMOVE_PLACEMENT_GROUP, placement_group.id.binary())


def get_placement_group(placement_group_name: str) -> PlacementGroup:
    """The group named ``placement_group_name`` in the current namespace."""
    if not placement_group_name:
        raise ValueError("Please supply a non-empty value to get_placement_group")
    cw = _worker()
    record = cw.gcs_call(GcsMethod.GET_PLACEMENT_GROUP, None, placement_group_name,
                         cw.current_namespace())
    if record is None:
        raise ValueError(f"Failed to look up placement group with name: {placement_group_name}")
    return PlacementGroup(ids.PlacementGroupID(record["pg_id"]))


def placement_group_table(placement_group: Optional[PlacementGroup] = None) -> dict:
    """Ray's view of one group's state, or of every group keyed by hex id."""
    cw = _worker()
    if placement_group is not None:
        record = _record(cw, placement_group.id.binary())
        return _table_entry(record) if record else {}
    return {r["pg_id"].hex(): _table_entry(r)
            for r in cw.gcs_call(GcsMethod.GET_ALL_PLACEMENT_GROUPS)}


def get_current_placement_group() -> Optional[PlacementGroup]:
    """The group the current task or actor runs in; None on the driver or
    outside any group."""
    cw = process_state.worker
    if cw is None or cw.is_driver:
        return None
    group = current_group(cw)
    return PlacementGroup(ids.PlacementGroupID(group[0])) if group else None


def check_placement_group_index(placement_group: PlacementGroup, bundle_index: int) -> None:
    if placement_group.is_empty:
        if bundle_index != -1:
            raise ValueError("If placement group is not set, the value of bundle index must be -1.")
    elif not isinstance(bundle_index, int) or not -1 <= bundle_index < placement_group.bundle_count:
        raise ValueError(f"placement group bundle index {bundle_index} is invalid. Valid "
                         f"placement group indexes: 0-{placement_group.bundle_count}")


def validate_placement_group(bundles, strategy: str, lifetime=None, _soft_target_node_id=None,
                             bundle_label_selector=None) -> None:
    if strategy not in VALID_PLACEMENT_GROUP_STRATEGIES:
        raise ValueError(f"Invalid placement group strategy {strategy}. Supported strategies are: "
                         f"{sorted(VALID_PLACEMENT_GROUP_STRATEGIES)}.")
    if _soft_target_node_id is not None:
        raise ValueError("_soft_target_node_id is not supported by zray")
    if bundle_label_selector:
        raise ValueError("bundle_label_selector is not supported by zray (nodes carry no labels)")
    if not isinstance(bundles, list):
        raise ValueError(f"Placement group bundles must be a list, got {type(bundles)}.")
    if not bundles:
        raise ValueError('Bundles must be a non-empty list of resource dictionaries. For example: '
                         '`[{"CPU": 1.0}, {"GPU": 1.0}]`. Got empty list instead.')
    for bundle in bundles:
        if (not isinstance(bundle, dict) or not all(isinstance(k, str) for k in bundle)
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           for v in bundle.values())):
            raise ValueError('Bundles must be a non-empty list of resource dictionaries. '
                             'For example: `[{"CPU": 1.0}, {"GPU": 1.0}]`.')
        if not bundle or all(v == 0 for v in bundle.values()):
            raise ValueError(f"Bundles cannot be an empty dictionary or resources with only 0 "
                             f"values. Bundles: {bundles}")
        negative = [k for k, v in bundle.items() if v < 0]
        if negative:
            raise ValueError(f"Bundle resources must be non-negative, got {bundle}")
        if "bundle" in bundle:   # the name every committed bundle gets (bundle_resources)
            raise ValueError(f"'bundle' is a reserved resource name; it cannot be requested in "
                             f"a bundle, got {bundle}")
        if "object_store_memory" in bundle:
            warnings.warn("Setting 'object_store_memory' for bundles is deprecated since it "
                          "doesn't actually reserve the required object store memory.",
                          DeprecationWarning, stacklevel=3)
    if lifetime not in (None, "detached"):
        raise ValueError(f"Placement group `lifetime` argument must be either `None` or "
                         f"'detached'. Got {lifetime}.")


# ------------------------------------------------------------- internals ---
def _worker():
    from ..api import _auto_init
    return _auto_init()


def _job_id(cw) -> bytes:
    ctx = cw.task_context()
    return ids.job_id_of(ctx.task_id) if ctx is not None else cw.job_id


def _record(cw, pg_id: bytes):
    return cw.gcs_call(GcsMethod.GET_PLACEMENT_GROUP, pg_id)


def _table_entry(record: dict) -> dict:
    return {
        "placement_group_id": record["pg_id"].hex(),
        "name": record["name"],
        "bundles": {i: dict(b) for i, b in enumerate(record["bundles"])},
        "bundles_to_node_id": {i: n.hex() for i, n in enumerate(record["bundle_nodes"])
                               if n is not None},
        "strategy": record["strategy"],
        "state": record["state"],
        "stats": {"scheduling_attempt": record["scheduling_attempts"],
                  "scheduling_state": "FINISHED" if record["state"] == "CREATED" else "QUEUED"},
    }


def _ready_ref(cw, pg: PlacementGroup):
    """An owned object the GCS's answer fills in: the group, or the error."""
    from ..core.object_ref import ObjectRef
    ctx = cw.task_context()
    ctx.puts += 1
    object_id = ids.object_id_for_put(ctx.task_id, ctx.puts)
    value = serialization.serialize_inline(pg)[0]

    def on_reply(reply):
        if reply.ok:
            cw.set_object_ready(object_id, ReturnKind.INLINE, value)
        else:
            error = exceptions.RaySystemError(f"placement group {pg.id.hex()}: {reply.payload[1]}")
            cw.set_object_ready(object_id, ReturnKind.ERROR, serialization.serialize_inline(error)[0])

    cw.loop.acquire()
    try:
        cw.refs.add_owned(object_id, cw.address)
        cw.gcs_call_async(GcsMethod.WAIT_PLACEMENT_GROUP_READY, (pg.id.binary(), None), on_reply)
    finally:
        cw.loop.release()
    return ObjectRef(object_id, cw.address, _count=False)


_feasible_bundles: set = set()   # (core worker, bundle shape) known to fit some node


def _warn_if_infeasible(cw, bundles, strategy: str) -> None:
    """Ray warns when no node could ever hold a bundle; the group stays pending.
    A shape found to fit is not asked about again (a GCS call per group otherwise)."""
    keys = [(id(cw), tuple(sorted(bundle.items()))) for bundle in bundles]
    if all(key in _feasible_bundles for key in keys):
        return
    nodes = [n for n in cw.gcs_call(GcsMethod.GET_ALL_NODES) if n.get("alive")]
    totals = [n["resources_total"] for n in nodes]
    for key, bundle in zip(keys, bundles):
        if any(all(total.get(k, 0) >= v for k, v in bundle.items() if v) for total in totals):
            _feasible_bundles.add(key)
        else:
            print(f"zray warning: placement group bundle {bundle} ({strategy}) does not fit "
                  f"on any node of this cluster; the group stays pending until a node that fits "
                  f"joins.", file=sys.stderr)
            return
