"""The raylet's placement-group bundles (mixin of Raylet: uses its
``available``/``total`` resources, ``gpus``, ``leases``, ``pool``, ``gcs``).

The GCS reserves a group's bundles here in two phases (zray.gcs.placement_groups):

* PrepareBundles: take the bundles' resources (and GPU devices) out of what
  leases can use - all of them or none, refused with the reason otherwise;
* CommitBundles: add the bundles as Ray-named resources (zray.bundle_resources)
  that only tasks and actors scheduled into the group ask for;
* ReturnBundles: undo either.  Workers leased on a returned bundle are ended
  (their owners see the worker die), then the reservation is given back;
* ReleaseUnusedBundles (after a GCS restart): return all but the listed ones.
"""
from __future__ import annotations

import logging

from .. import bundle_resources as br
from ..sockets import messages as m
from . import resources as res
from .gpu_ids import GpuInstances

log = logging.getLogger("zray.raylet")

PREPARED = "PREPARED"
COMMITTED = "COMMITTED"


class Bundle:
    __slots__ = ("state", "reserved", "gpus", "gpu_pool", "added")

    def __init__(self, reserved: dict, gpus):
        self.state = PREPARED
        self.reserved = reserved      # fixed-point resources taken from the node
        self.gpus = gpus              # ((device, amount), ...) taken from the node's GPUs
        self.gpu_pool = None          # those devices, for the leases in the bundle
        self.added: dict = {}         # fixed-point group resources added on commit


class BundleHandlers:
    def on_prepare_bundles(self, identity, msg) -> None:
        try:
            wanted = [(int(index), res.to_fixed(bundle)) for index, bundle in msg.bundles]
        except (TypeError, ValueError) as exc:
            self.send(identity, m.BundlesPrepared(msg.pg_id, msg.attempt, False,
                                                       f"bad bundles: {exc}"))
            return
        wanted = [(i, need) for i, need in wanted if (msg.pg_id, i) not in self.bundles]
        total_need: dict = {}
        for _, need in wanted:
            res.add(total_need, need)
        if not res.fits(total_need, self.available):
            self.send(identity, m.BundlesPrepared(msg.pg_id, msg.attempt, False, (
                f"node {self.node_id.hex()[:8]} has {res.to_float(self.available)} available, "
                f"the bundles need {res.to_float(total_need)}")))
            return
        taken = []
        for index, need in wanted:
            gpus = self.gpus.assign(need.get("GPU", 0))
            if gpus is None:
                for gpu_assignment in taken:
                    self.gpus.release(gpu_assignment)
                self.send(identity, m.BundlesPrepared(msg.pg_id, msg.attempt, False,
                                                           "GPU devices too fragmented"))
                return
            taken.append(gpus)
        for (index, need), gpus in zip(wanted, taken):
            res.subtract(self.available, need)
            self.bundles[(msg.pg_id, index)] = Bundle(need, gpus)
        self.send(identity, m.BundlesPrepared(msg.pg_id, msg.attempt, True, ""))

    def on_commit_bundles(self, identity, msg) -> None:
        group_hex = msg.pg_id.hex()
        for index in msg.indices:
            bundle = self.bundles.get((msg.pg_id, index))
            if bundle is None or bundle.state != PREPARED:
                continue
            bundle.state = COMMITTED
            bundle.added = res.to_fixed(br.committed_resources(
                index, res.to_float(bundle.reserved), group_hex))
            bundle.gpu_pool = GpuInstances.from_assignment(bundle.gpus)
            res.add(self.total, bundle.added)
            res.add(self.available, bundle.added)
        self.total_float = res.to_float(self.total)
        self.send(identity, m.BundlesCommitted(msg.pg_id, msg.attempt,
                                               res.to_float(self.available), self.total_float))
        self._schedule()   # leases queued for the group may fit now

    def on_return_bundles(self, identity, msg) -> None:
        self._return_bundles(msg.pg_id, msg.indices)

    def on_release_unused_bundles(self, identity, msg) -> None:
        try:
            keep = {(bytes(pg_id), int(index)) for pg_id, index in msg.keep}
        except (TypeError, ValueError) as exc:
            log.warning("dropping ReleaseUnusedBundles with a bad keep list: %s", exc)
            return
        unused: dict = {}
        for pg_id, index in self.bundles:
            if (pg_id, index) not in keep:
                unused.setdefault(pg_id, []).append(index)
        for pg_id, indices in unused.items():
            log.info("returning %d bundle(s) of placement group %s that the restarted GCS "
                     "does not know", len(indices), pg_id.hex())
            self._return_bundles(pg_id, indices)

    def _return_bundles(self, pg_id: bytes, indices) -> None:
        group_hex = pg_id.hex()
        returned = []
        for index in indices:
            bundle = self.bundles.pop((pg_id, index), None)
            if bundle is not None:
                returned.append((index, bundle))
        if not returned:
            return
        if any(held_pg == pg_id for held_pg, _ in self.bundles):
            ending = {name for index, bundle in returned for name in bundle.added
                      if f"_group_{index}_" in name}
            doomed = lambda name: name in ending   # noqa: E731
        else:   # the group's last bundles here: whatever runs in the group ends
            doomed = lambda name: br.is_group_resource(name, group_hex)   # noqa: E731
        for lease in list(self.leases.values()):
            if any(doomed(name) for name in lease.demand):
                # Ray ends what runs in a removed group; the owner sees the worker die.
                self.pool.kill(lease.worker)
        for index, bundle in returned:
            if bundle.state == COMMITTED:
                _take_out(self.total, bundle.added)
                _take_out(self.available, bundle.added)
            res.add(self.available, bundle.reserved)
            self.gpus.release(bundle.gpus)
        self.total_float = res.to_float(self.total)
        log.debug("returned %d bundle(s) of placement group %s", len(returned), group_hex)
        self._schedule()

    def assign_gpus(self, demand: dict):
        """(pool, ((device, amount), ...)) for a lease of ``demand``: from the
        node's devices, or from those of the group bundle it runs in; (None, ())
        if it asks for no GPU; None if no devices fit now."""
        amount, pools = self._gpu_pools(demand)
        if not amount:
            return None, ()
        for pool in pools:
            devices = pool.assign(amount)
            if devices is not None:
                return pool, devices
        return None

    def _gpu_pools(self, demand: dict) -> tuple:
        if demand.get("GPU"):
            return demand["GPU"], [self.gpus]
        wildcard = None
        for name, amount in demand.items():
            if not amount or not name.startswith("GPU_group_"):
                continue
            index, sep, group_hex = name[len("GPU_group_"):].partition("_")
            try:
                if sep:      # GPU_group_<index>_<hex>: that bundle's devices
                    bundle = self.bundles.get((bytes.fromhex(group_hex), int(index)))
                    return amount, [bundle.gpu_pool] if bundle and bundle.gpu_pool else []
                wildcard = (amount, bytes.fromhex(index))   # GPU_group_<hex>
            except ValueError:
                continue     # a custom resource that only looks like a group's
        if wildcard is None:
            return 0, []
        amount, group = wildcard
        return amount, [b.gpu_pool for (pg_id, _), b in self.bundles.items()
                        if pg_id == group and b.gpu_pool is not None]


def _take_out(resources: dict, added: dict) -> None:
    """Remove a bundle's group resources (a name left at zero disappears, as in Ray)."""
    for name, amount in added.items():
        left = resources.get(name, 0) - amount
        if left > 0:
            resources[name] = left
        else:
            resources.pop(name, None)
