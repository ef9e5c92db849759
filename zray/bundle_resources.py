"""Placement-group bundles as node resources (Ray's naming, shared by the
owner that formats a task's demand, the raylet that adds a committed
bundle's resources, and the GCS that recognises them).

A committed bundle ``i`` of group ``G`` (hex id) holding {"CPU": 2} adds to
its node::

    CPU_group_i_G       2      that bundle's CPU
    CPU_group_G         2      the group's CPU on this node (summed over its bundles)
    bundle_group_i_G    1000   lets a zero-resource task or actor pin to the bundle
    bundle_group_G      1000   (per bundle on the node)

A task scheduled into bundle ``i`` asks for ``X_group_i_G`` and ``X_group_G``
for each resource X it needs (plus a sliver of the bundle resources); one
for "any bundle" (index -1) asks for ``X_group_G`` only.  The existing
lease accounting then does the rest, as in Ray.
"""
from __future__ import annotations

BUNDLE = "bundle"
BUNDLE_UNITS = 1000.0      # a bundle's own resource, as Ray's
BUNDLE_SLIVER = 0.001      # what each task or actor in a group takes of it


def indexed(name: str, index: int, group_hex: str) -> str:
    return f"{name}_group_{index}_{group_hex}"


def wildcard(name: str, group_hex: str) -> str:
    return f"{name}_group_{group_hex}"


def committed_resources(index: int, bundle: dict, group_hex: str) -> dict:
    """What committing bundle ``index`` ({name: amount}) adds to its node."""
    added = {}
    for name, amount in bundle.items():
        if amount:
            added[indexed(name, index, group_hex)] = amount
            added[wildcard(name, group_hex)] = amount
    added[indexed(BUNDLE, index, group_hex)] = BUNDLE_UNITS
    added[wildcard(BUNDLE, group_hex)] = BUNDLE_UNITS
    return added


def demand_in_group(shape: dict, index: int, group_hex: str) -> dict:
    """A task's resource ``shape`` rewritten to run in bundle ``index``
    (-1: any bundle of the group)."""
    demand = {}
    for name, amount in shape.items():
        if amount:
            demand[wildcard(name, group_hex)] = amount
            if index >= 0:
                demand[indexed(name, index, group_hex)] = amount
    demand[wildcard(BUNDLE, group_hex)] = BUNDLE_SLIVER
    if index >= 0:
        demand[indexed(BUNDLE, index, group_hex)] = BUNDLE_SLIVER
    return demand


def is_group_resource(name: str, group_hex: str) -> bool:
    return "_group_" in name and name.endswith("_" + group_hex)
