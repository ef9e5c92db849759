"""Ray's scheduling strategies (ray.util.scheduling_strategies), given as the
``scheduling_strategy`` option of tasks and actors.  zray.scheduling turns
them into what the raylets schedule by."""
from __future__ import annotations

from typing import Optional

from .. import ids


class PlacementGroupSchedulingStrategy:
    """Run in ``placement_group``: in bundle ``placement_group_bundle_index``
    (-1: any bundle).  With ``placement_group_capture_child_tasks`` the tasks
    and actors it starts run in the same group unless they say otherwise."""

    def __init__(self, placement_group, placement_group_bundle_index: int = -1,
                 placement_group_capture_child_tasks: Optional[bool] = None):
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks


class NodeAffinitySchedulingStrategy:
    """Run on the node ``node_id`` (hex).  If that node does not exist (or is
    dead): fail with TaskUnschedulableError when ``soft`` is False, run
    anywhere when it is True."""

    def __init__(self, node_id, soft: bool, _spill_on_unavailable: bool = False,
                 _fail_on_unavailable: bool = False):
        if not isinstance(node_id, str):
            node_id = node_id.hex()
        self.node_id = node_id
        self.soft = soft
        self._spill_on_unavailable = _spill_on_unavailable
        self._fail_on_unavailable = _fail_on_unavailable
        try:
            valid = not ids.NodeID.from_hex(node_id).is_nil()
        except (ValueError, TypeError):
            valid = False
        if not valid:
            raise ValueError(f"Invalid node_id '{node_id}'. Node ID must be a valid hex string. "
                             f"zray.nodes() lists the nodes of the cluster and their ids.")
        if _spill_on_unavailable and not soft:
            raise ValueError("_spill_on_unavailable cannot be set when soft is False. "
                             "Please set soft to True to use _spill_on_unavailable.")
        if _fail_on_unavailable and soft:
            raise ValueError("_fail_on_unavailable cannot be set when soft is True. "
                             "Please set soft to False to use _fail_on_unavailable.")


__all__ = ["NodeAffinitySchedulingStrategy", "PlacementGroupSchedulingStrategy"]
