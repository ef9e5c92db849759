"""Which GPU devices a lease gets (the raylet's; Ray's GPU instance ids).

Amounts are fixed point (resources.UNIT per GPU).  A whole number of GPUs
takes that many completely free devices; a fraction shares one device with
other fractions (best fit: the fullest device it still fits on), as Ray
packs fractional GPU requests.  The worker running the lease's tasks gets
the device indices as ``get_gpu_ids()`` and ``CUDA_VISIBLE_DEVICES``.
"""
from __future__ import annotations

from .resources import UNIT


class GpuInstances:
    def __init__(self, count: int):
        self.free = [UNIT] * count     # per device: capacity not yet assigned

    def assign(self, amount: int):
        """A tuple of (device index, amount) for ``amount``, or None if the
        devices are too fragmented (or busy) for it now."""
        if amount <= 0:
            return ()
        if amount >= UNIT:
            wanted = -(-amount // UNIT)          # more than one GPU: whole devices
            devices = [i for i, left in enumerate(self.free) if left == UNIT][:wanted]
            if len(devices) < wanted:
                return None
            for i in devices:
                self.free[i] = 0
            return tuple((i, UNIT) for i in devices)
        fitting = [i for i, left in enumerate(self.free) if left >= amount]
        if not fitting:
            return None
        device = min(fitting, key=lambda i: (self.free[i], i))
        self.free[device] -= amount
        return ((device, amount),)

    def release(self, assignment) -> None:
        for device, amount in assignment or ():
            self.free[device] = min(UNIT, self.free[device] + amount)
