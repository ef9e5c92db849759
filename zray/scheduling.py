"""A task's or actor's ``scheduling_strategy`` (and the older
``placement_group*`` options) turned into what the raylets schedule by.

* "DEFAULT", "SPREAD", None: the resource shape as is (one host: spreading
  has nowhere to go).  "DEFAULT" also stops capture by a parent's group.
* PlacementGroupSchedulingStrategy: the shape rewritten into the group's
  bundle resources (zray.bundle_resources), after Ray's checks (the bundle
  index exists, the shape fits some bundle).  Tasks and actors started by
  one that runs in a group with capture_child_tasks join it by default.
* NodeAffinitySchedulingStrategy: runs where the node is; when the node is
  not alive, ``soft`` runs it anywhere and hard fails it as unschedulable.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

from . import bundle_resources as br
from .sockets.messages import GcsMethod

_DEFAULT = object()


class Placement(NamedTuple):
    demand: dict                    # resources to lease with
    group: Optional[tuple] = None   # (pg id, capture child tasks) when it runs in a group
    unschedulable: str = ""         # why it can never run (hard node affinity to a dead node)
    node_affinity: Optional[tuple] = None   # (node id, soft), for the GCS to place an actor


def resolve(cw, options: dict, shape: dict, what: str, is_actor: bool = False) -> Placement:
    strategy = options.get("scheduling_strategy")
    if strategy is None and "placement_group" not in options and not _captured(cw):
        return Placement(shape)   # the common case: every task, kept cheap
    # Imported here: zray.util imports the API modules that import this one.
    from .util.placement_group import PlacementGroup, check_placement_group_index
    from .util.scheduling_strategies import (NodeAffinitySchedulingStrategy,
                                             PlacementGroupSchedulingStrategy)
    group = options.get("placement_group", _DEFAULT)
    index = options.get("placement_group_bundle_index", -1)
    capture = options.get("placement_group_capture_child_tasks")
    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        group = strategy.placement_group
        index = strategy.placement_group_bundle_index
        capture = strategy.placement_group_capture_child_tasks
    elif isinstance(strategy, NodeAffinitySchedulingStrategy):
        return _node_affinity(cw, strategy, shape, is_actor)
    elif strategy not in (None, "DEFAULT", "SPREAD"):
        raise ValueError(f"Invalid scheduling_strategy value {strategy}. Valid values are "
                         f'["DEFAULT" | "SPREAD" | PlacementGroupSchedulingStrategy | '
                         f"NodeAffinitySchedulingStrategy]")
    if group is _DEFAULT or group == "default":
        parent = current_group(cw) if strategy is None else None
        if parent is None or not parent[1]:
            return Placement(shape)
        group, index, capture = PlacementGroup(_pg_id(parent[0])), -1, True
    if group is None or (isinstance(group, PlacementGroup) and group.is_empty):
        if index != -1:
            raise ValueError("If placement group is not set, the value of bundle index must be -1.")
        return Placement(shape)
    if not isinstance(group, PlacementGroup):
        raise TypeError(f"placement_group must be a PlacementGroup, got {type(group).__name__}")
    check_placement_group_index(group, index)
    # An actor without num_cpus needs 1 CPU to be placed (Ray's), whatever else it asks.
    needs_cpu_to_place = is_actor and options.get("num_cpus") is None
    _check_fits(group, shape, what, needs_cpu_to_place)
    group_hex = group.id.hex()
    return Placement(br.demand_in_group(shape, index, group_hex),
                     (group.id.binary(), bool(capture)))


def current_group(cw) -> Optional[tuple]:
    """(pg id, capture child tasks) of the running task or actor, or None."""
    if cw.actor_id is not None:
        return getattr(cw, "actor_placement_group", None)
    return cw.task_context().placement_group


def _captured(cw) -> bool:
    """Whether the running task or actor makes its children join its group."""
    group = current_group(cw)
    return group is not None and group[1]


def _pg_id(pg_id: bytes):
    from . import ids
    return ids.PlacementGroupID(pg_id)


def _check_fits(group, shape: dict, what: str, needs_cpu_to_place: bool) -> None:
    """Ray refuses at submission a shape that fits no bundle of the group (an
    actor without num_cpus also needs the 1 CPU it is placed with)."""
    if needs_cpu_to_place:
        shape = dict(shape, CPU=max(1.0, shape.get("CPU", 0.0)))
    bundles = group.bundle_specs
    if any(all(bundle.get(name, 0) >= amount for name, amount in shape.items() if amount)
           for bundle in bundles):
        return
    shown = {k: v for k, v in shape.items() if v}
    raise ValueError(f"Cannot schedule {what} with the placement group because the resource "
                     f"request {shown} cannot fit into any bundles for the placement group, "
                     f"{bundles}.")


def _node_affinity(cw, strategy, shape: dict, is_actor: bool) -> Placement:
    node_id = bytes.fromhex(strategy.node_id)
    if is_actor:   # the GCS places actors: it applies the affinity
        return Placement(shape, node_affinity=(node_id, bool(strategy.soft)))
    if node_id == cw.node_id or strategy.soft:
        return Placement(shape)
    alive = any(n["node_id"] == node_id and n.get("alive")
                for n in cw.gcs_call(GcsMethod.GET_ALL_NODES))
    if not alive:
        return Placement(shape, unschedulable=(
            "The node specified via NodeAffinitySchedulingStrategy doesn't exist any more or "
            "is infeasible, and soft=False was specified."))
    return Placement(shape, unschedulable=(
        f"The node {strategy.node_id} specified via NodeAffinitySchedulingStrategy is not the "
        f"submitter's node: zray leases tasks from the local node only (spillback to other "
        f"nodes comes with multi-host scheduling)."))
