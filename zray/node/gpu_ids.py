"""Which GPU devices a lease gets (the raylet's; Ray's GPU instance ids).

Amounts are fixed point (resources.UNIT per GPU).  A whole number of GPUs
takes that many completely free devices; a fraction shares one device with
other fractions (best fit: the fullest device it still fits on), as Ray
packs fractional GPU requests.  The worker running the lease's tasks gets
the device indices as ``get_gpu_ids()`` and ``CUDA_VISIBLE_DEVICES``.

A placement-group bundle reserves devices the same way and hands them out
to the leases that run in it from a pool of its own (``from_assignment``).
"""
from __future__ import annotations

import os

from .resources import UNIT


def node_device_ids(count: int) -> list:
    """The node's GPU ids: as Ray, the first ``count`` of CUDA_VISIBLE_DEVICES
    when the node starts with it set, else 0..count-1."""
    listed = [part.strip() for part in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
              if part.strip()]
    if len(listed) >= count:
        if all(part.isdigit() for part in listed):
            return [int(part) for part in listed[:count]]
        return listed[:count]
    return list(range(count))


class GpuInstances:
    def __init__(self, count: int = 0, capacity: dict | None = None):
        # device index -> its capacity here / what is not yet assigned
        self.capacity = dict(capacity) if capacity is not None else {i: UNIT for i in range(count)}
        self.free = dict(self.capacity)

    @classmethod
    def from_assignment(cls, assignment) -> "GpuInstances":
        """A pool of exactly the devices (and shares of them) in ``assignment``."""
        return cls(capacity={device: amount for device, amount in assignment or ()})

    def assign(self, amount: int):
        """A tuple of (device index, amount) for ``amount``, or None if the
        devices are too fragmented (or busy) for it now."""
        if amount <= 0:
            return ()
        free = self.free
        if amount >= UNIT:
            wanted = -(-amount // UNIT)          # more than one GPU: whole devices
            devices = sorted(d for d, left in free.items() if left == UNIT)[:wanted]
            if len(devices) < wanted:
                return None
            for d in devices:
                free[d] = 0
            return tuple((d, UNIT) for d in devices)
        fitting = [d for d, left in free.items() if left >= amount]
        if not fitting:
            return None
        device = min(fitting, key=lambda d: (free[d], d))
        free[device] -= amount
        return ((device, amount),)

    def release(self, assignment) -> None:
        for device, amount in assignment or ():
            if device in self.capacity:
                self.free[device] = min(self.capacity[device], self.free[device] + amount)
