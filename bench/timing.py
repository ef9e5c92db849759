"""Timing for the benchmark harness: the `timeit`-like callback workloads use.

Owns the measurement method (same shape as Ray's microbenchmark helper:
warm up for a while, size a batch from the warmup rate, then run a few timed
rounds and report mean and population stddev of ops/s) and the two duration
presets, FULL (Ray's 1 s warmup + 4 x 2 s rounds) and QUICK.
"""

import os
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Tuple


@dataclass(frozen=True)
class TimingConfig:
    """How long each workload is measured."""

    settle_s: float  # idle pause before warmup, lets the previous workload's teardown finish
    warmup_s: float
    rounds: int
    round_s: float
    init_samples: int  # fresh processes timed for "init to first result"


# Ray's `ray microbenchmark` also sleeps 10 s per workload "to avoid noisy
# neighbours"; we pause briefly instead, since our runs are local and serial.
FULL = TimingConfig(settle_s=0.5, warmup_s=1.0, rounds=4, round_s=2.0, init_samples=3)
# QUICK keeps just enough rounds for a mean and a spread. Each workload still
# makes >= 3 calls (warmup + one per round), so slow calls set its duration.
QUICK = TimingConfig(settle_s=0.0, warmup_s=0.05, rounds=2, round_s=0.2, init_samples=1)


def measure(fn: Callable[[], object], multiplier: float, config: TimingConfig) -> Tuple[float, float]:
    """Time `fn` repeatedly; return (mean, stddev) of `multiplier * calls / second`.

    `multiplier` converts one call of `fn` into the reported unit, e.g. 1000
    when one call submits 1000 tasks.
    """
    if config.settle_s > 0:
        # Finish the previous workload's disk writes first (the spill rows
        # leave gigabytes of dirty pages whose writeback otherwise eats CPU
        # during the next rows), then let its teardown settle.
        os.sync()
        time.sleep(config.settle_s)

    # Warmup: at least one call, so first-call costs (worker start-up, code
    # shipping) never land in a timed round.
    warmup_calls = 0
    warmup_start = time.perf_counter()
    while True:
        fn()
        warmup_calls += 1
        if time.perf_counter() - warmup_start >= config.warmup_s:
            break

    # Check the clock once per batch rather than per call, so the clock read
    # does not dominate very cheap calls (same batching rule as Ray's helper).
    batch = warmup_calls // 10 + 1
    rates = []
    for _ in range(config.rounds):
        calls = 0
        round_start = time.perf_counter()
        while True:
            for _ in range(batch):
                fn()
            calls += batch
            elapsed = time.perf_counter() - round_start
            if elapsed >= config.round_s:
                break
        rates.append(multiplier * calls / elapsed)

    mean = statistics.fmean(rates)
    stddev = statistics.pstdev(rates) if len(rates) > 1 else 0.0
    return mean, stddev


def make_timeit(config: TimingConfig) -> Callable[..., Tuple[float, float]]:
    """Return the `timeit(fn, multiplier=1) -> (mean, sd)` callback handed to workloads."""

    def timeit(fn: Callable[[], object], multiplier: float = 1) -> Tuple[float, float]:
        return measure(fn, multiplier, config)

    return timeit
