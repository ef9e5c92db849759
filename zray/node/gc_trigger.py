"""When the raylet asks every process on its node to run ``gc.collect()``.

ObjectRefs and actor handles caught in reference cycles are released only by
Python's cyclic collector, which a process may run late or never (a worker
that called ``gc.disable()``), so their objects pin the store and their actors
hold resources.  As Ray's raylet does, zray then collects in every worker and
driver of the node:

- when the object store is more than ``high_plasma_storage_usage`` full, at
  most every ``global_gc_min_interval_s``;
- when something waits for memory or resources that nobody frees: an object
  creation waiting for space, or lease requests with no grant for
  ``STUCK_LEASES_GC_S`` (actors kept alive by cycles);
- every ``local_gc_interval_s`` regardless;
- when a process asks (``zray._private.internal_api.global_gc()``).

Automatic collections are at least ``local_gc_min_interval_s`` apart (a due
one waits, it is not dropped); an explicit request runs at once.  The knobs
are Ray's config names, read from ``_system_config`` or ``RAY_<name>``.
"""
from __future__ import annotations

import math
import os

DEFAULTS = {
    "high_plasma_storage_usage": 0.7,
    "local_gc_interval_s": 600.0,
    "local_gc_min_interval_s": 10.0,
    "global_gc_min_interval_s": 30.0,
}
# Ray warns about a resource deadlock after its second 10 s check and then
# collects; zray collects once lease requests have waited this long with no grant.
STUCK_LEASES_GC_S = 5.0


def gc_config(system_config: dict | None = None) -> dict:
    """The GC knobs: ``system_config`` first, then RAY_<name>, then Ray's defaults."""
    config = {}
    for name, default in DEFAULTS.items():
        value = (system_config or {}).get(name, os.environ.get(f"RAY_{name}", default))
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number, got {value!r}") from None
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value!r}")
        config[name] = value
    return config


class GcTrigger:
    """Decides, tick by tick, whether the node collects now."""

    def __init__(self, config: dict, now: float):
        self.high_usage = config["high_plasma_storage_usage"]
        self.interval_s = config["local_gc_interval_s"]
        self.min_interval_s = config["local_gc_min_interval_s"]
        self.usage_min_interval_s = config["global_gc_min_interval_s"]
        self.last_collect = -math.inf          # the first collection is never held back
        self.last_periodic = now
        self.last_usage_trigger = -math.inf
        self.pending = False                   # an automatic collection is due
        self.asked = False                     # someone asked explicitly
        self.collections = 0

    def request(self, explicit: bool = False) -> None:
        if explicit:
            self.asked = True
        else:
            self.pending = True

    def due(self, now: float, store_used_fraction: float) -> bool:
        """True when the node should collect now (and counts it as done)."""
        if (store_used_fraction > self.high_usage
                and now - self.last_usage_trigger >= self.usage_min_interval_s):
            self.last_usage_trigger = now
            self.pending = True
        if self.interval_s and now - self.last_periodic >= self.interval_s:
            self.pending = True
        if not self.asked and not (self.pending and now - self.last_collect >= self.min_interval_s):
            return False
        self.asked = self.pending = False
        self.last_collect = self.last_periodic = now
        self.collections += 1
        return True
