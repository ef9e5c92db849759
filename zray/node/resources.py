"""Resource amounts in fixed point (1e-4 units) so fractional requests never
drift: {"CPU": 0.5} -> {"CPU": 5000}."""
from __future__ import annotations

UNIT = 10_000


def to_fixed(resources: dict) -> dict:
    out = {}
    for name, amount in resources.items():
        if amount < 0:
            raise ValueError(f"resource {name!r} has a negative amount {amount}")
        out[name] = int(round(amount * UNIT))
    return out


def to_float(resources: dict) -> dict:
    return {name: amount / UNIT for name, amount in resources.items()}


def fits(demand: dict, available: dict) -> bool:
    for name, amount in demand.items():
        if amount and available.get(name, 0) < amount:
            return False
    return True


def subtract(available: dict, demand: dict) -> None:
    for name, amount in demand.items():
        if amount:
            available[name] = available.get(name, 0) - amount


def add(available: dict, demand: dict) -> None:
    for name, amount in demand.items():
        if amount:
            available[name] = available.get(name, 0) + amount
