"""Workload definitions: what `zray bench` measures, independent of the runtime.

Each in-process workload is `run(rt, timeit) -> (mean, stddev)`, where `rt` is
the runtime module under test (zray or ray, already initialised) and `timeit`
is `timing.make_timeit(...)`. Remote functions and actors are defined at call
time through `rt.remote`, so the same code runs on any Ray-API module.

Names, batch sizes and multipliers follow Ray's `ray microbenchmark`
(python/ray/_private/ray_perf.py) so numbers are comparable with Ray's
published ones. The one exception is "init to first result", which needs a
fresh process and is measured by `fresh_init.py` (marked `fresh_process`).

Actor handles are local to each workload, so they go out of scope (and the
actors exit) when the workload returns; `_release` also kills them explicitly
when the runtime offers `kill`, so a workload never inherits a previous one's
actors.
"""

import os
from dataclasses import dataclass
from typing import Callable, List, Optional

# Ray's microbenchmark uses half the cores for the 1:n / n:n fan-outs; keep at
# least one so single-core machines do not divide by zero.
FANOUT_ACTORS = max(1, (os.cpu_count() or 2) // 2)


@dataclass(frozen=True)
class Workload:
    name: str  # exactly as in Ray's microbenchmark output
    run: Optional[Callable]  # (rt, timeit) -> (mean, sd); None for fresh_process workloads
    unit: str = "ops/s"
    higher_is_better: bool = True
    optional: bool = False  # heavy multi-client workloads: skipped in quick mode
    fresh_process: bool = False  # measured in a new interpreter, before the module is initialised


# ---------------------------------------------------------------- shared defs

def _small_value_fn(rt):
    def small_value():
        return b"ok"

    return rt.remote(small_value)


def _actor_cls(rt, small_value):
    """Ray's `Actor`: a zero-CPU actor with trivial methods."""

    class Actor:
        def small_value(self):
            return b"ok"

        def small_value_batch(self, n):
            rt.get([small_value.remote() for _ in range(n)])

    return rt.remote(num_cpus=0)(Actor)


def _async_actor_cls(rt):
    """Ray's `AsyncActor`: async methods, so calls run on the actor's event loop."""

    class AsyncActor:
        async def small_value(self):
            return b"ok"

    # Default resources, as in Ray's benchmark (not num_cpus=0 like Actor).
    return rt.remote(AsyncActor)


def _client_cls(rt):
    """Ray's `Client`: an actor that fans calls out to a list of server actors."""

    class Client:
        def __init__(self, servers):
            self.servers = servers if isinstance(servers, list) else [servers]

        def small_value_batch(self, n):
            results = []
            for server in self.servers:
                results.extend([server.small_value.remote() for _ in range(n)])
            rt.get(results)

    return rt.remote(num_cpus=0)(Client)


def _release(rt, *actors):
    """Kill actors eagerly where supported; dropping handles also ends them."""
    kill = getattr(rt, "kill", None)
    if kill is None:
        return
    for actor in actors:
        try:
            kill(actor)
        except Exception:  # cleanup is best effort; the measurement is done
            pass


# ------------------------------------------------------------ object store

def single_client_get_calls(rt, timeit):
    value = rt.put(0)
    return timeit(lambda: rt.get(value))


def single_client_put_calls(rt, timeit):
    return timeit(lambda: rt.put(0))


def multi_client_put_calls(rt, timeit):
    def do_put_small():
        for _ in range(100):
            rt.put(0)

    do_put_small = rt.remote(do_put_small)
    # 10 tasks x 100 puts per call.
    return timeit(lambda: rt.get([do_put_small.remote() for _ in range(10)]), 1000)


def single_client_put_gigabytes(rt, timeit):
    import numpy as np  # only this workload needs numpy

    array = np.zeros(100 * 1024 * 1024, dtype=np.int64)  # 800 MiB, so 0.8 GB per call
    return timeit(lambda: rt.put(array), 8 * 0.1)


def single_client_get_gigabytes(rt, timeit):
    """Not in Ray's list (issue 3): get of an 800 MiB array, zero-copy on both."""
    import numpy as np

    ref = rt.put(np.zeros(100 * 1024 * 1024, dtype=np.int64))
    return timeit(lambda: rt.get(ref), 8 * 0.1)


SPILL_CHUNK = 256 * 1024 * 1024 // 8          # int64 elements: 256 MiB a put
SPILL_WINDOW = 12                              # 3 GiB live: more than the 2 GiB store


def single_client_spill_gigabytes(rt, timeit):
    """Puts into a full store: every put spills an older object (issue 3)."""
    import numpy as np

    array = np.ones(SPILL_CHUNK, dtype=np.int64)
    live = []

    def put_spilling():
        live.append(rt.put(array))
        if len(live) > SPILL_WINDOW:
            live.pop(0)

    return timeit(put_spilling, 0.25 * 1.073741824)


def single_client_restore_gigabytes(rt, timeit):
    """Gets of spilled objects: each get restores one (and spills another)."""
    import numpy as np

    array = np.ones(SPILL_CHUNK, dtype=np.int64)
    refs = [rt.put(array) for _ in range(SPILL_WINDOW)]
    position = [0]

    def get_restoring():
        value = rt.get(refs[position[0] % len(refs)])
        position[0] += 1
        del value

    return timeit(get_restoring, 0.25 * 1.073741824)


def single_client_get_object_containing_10k_refs(rt, timeit):
    def create_object_containing_ref():
        return [rt.put(1) for _ in range(10000)]

    create_object_containing_ref = rt.remote(create_object_containing_ref)
    ref = create_object_containing_ref.remote()
    return timeit(lambda: rt.get(ref))


def single_client_wait_1k_refs(rt, timeit):
    small_value = _small_value_fn(rt)

    def wait_one_at_a_time():
        not_ready = [small_value.remote() for _ in range(1000)]
        # Like Ray: request local fetch only on the first wait; the fetch
        # request persists, so repeating it would only add overhead.
        fetch_local = True
        for _ in range(1000):
            _ready, not_ready = rt.wait(not_ready, fetch_local=fetch_local)
            fetch_local = False

    return timeit(wait_one_at_a_time)


# ------------------------------------------------------------------ tasks

def single_client_tasks_and_get_batch(rt, timeit):
    small_value = _small_value_fn(rt)
    # Ray reports this one per batch of 1000 (multiplier 1), unlike "tasks async".
    return timeit(lambda: rt.get([small_value.remote() for _ in range(1000)]))


def single_client_tasks_sync(rt, timeit):
    small_value = _small_value_fn(rt)
    return timeit(lambda: rt.get(small_value.remote()))


def single_client_tasks_async(rt, timeit):
    small_value = _small_value_fn(rt)
    return timeit(lambda: rt.get([small_value.remote() for _ in range(1000)]), 1000)


def multi_client_tasks_async(rt, timeit):
    n, m = 10000, 4
    actors = [_actor_cls(rt, _small_value_fn(rt)).remote() for _ in range(m)]
    try:
        return timeit(lambda: rt.get([a.small_value_batch.remote(n) for a in actors]), n * m)
    finally:
        _release(rt, *actors)


# ----------------------------------------------------------------- actors

def actor_calls_sync(rt, timeit):
    actor = _actor_cls(rt, _small_value_fn(rt)).remote()
    try:
        return timeit(lambda: rt.get(actor.small_value.remote()))
    finally:
        _release(rt, actor)


def actor_calls_async(rt, timeit):
    actor = _actor_cls(rt, _small_value_fn(rt)).remote()
    try:
        return timeit(lambda: rt.get([actor.small_value.remote() for _ in range(1000)]), 1000)
    finally:
        _release(rt, actor)


def actor_calls_concurrent(rt, timeit):
    actor = _actor_cls(rt, _small_value_fn(rt)).options(max_concurrency=16).remote()
    try:
        return timeit(lambda: rt.get([actor.small_value.remote() for _ in range(1000)]), 1000)
    finally:
        _release(rt, actor)


def one_to_n_actor_calls_async(rt, timeit):
    n = 5000
    actor_cls = _actor_cls(rt, _small_value_fn(rt))
    servers = [actor_cls.remote() for _ in range(FANOUT_ACTORS)]
    client = _client_cls(rt).remote(servers)
    try:
        return timeit(lambda: rt.get(client.small_value_batch.remote(n)), n * len(servers))
    finally:
        _release(rt, client, *servers)


def n_to_n_actor_calls_async(rt, timeit):
    n, m = 5000, 4
    actor_cls = _actor_cls(rt, _small_value_fn(rt))
    servers = [actor_cls.remote() for _ in range(FANOUT_ACTORS)]
    fanout = len(servers)

    def work(actors):
        rt.get([actors[i % fanout].small_value.remote() for i in range(n)])

    work = rt.remote(work)
    try:
        return timeit(lambda: rt.get([work.remote(servers) for _ in range(m)]), m * n)
    finally:
        _release(rt, *servers)


def async_actor_calls_sync(rt, timeit):
    actor = _async_actor_cls(rt).remote()
    try:
        return timeit(lambda: rt.get(actor.small_value.remote()))
    finally:
        _release(rt, actor)


def async_actor_calls_async(rt, timeit):
    actor = _async_actor_cls(rt).remote()
    try:
        return timeit(lambda: rt.get([actor.small_value.remote() for _ in range(1000)]), 1000)
    finally:
        _release(rt, actor)


def placement_group_create_removal(rt, timeit):
    """Ray's: 100 groups of one {"custom": 0.001} bundle, each waited for, then removed."""
    util = rt.util

    def create_and_remove():
        groups = [util.placement_group(bundles=[{"custom": 0.001}]) for _ in range(100)]
        for group in groups:
            group.wait(timeout_seconds=30)
        for group in groups:
            util.remove_placement_group(group)

    return timeit(create_and_remove, 100)


# -------------------------------------------------------------- registry

WORKLOADS: List[Workload] = [
    # First, so it runs before this process initialises the module.
    Workload("init to first result", None, unit="s", higher_is_better=False, fresh_process=True),
    Workload("single client get calls (Plasma Store)", single_client_get_calls),
    Workload("single client put calls (Plasma Store)", single_client_put_calls),
    Workload("multi client put calls (Plasma Store)", multi_client_put_calls, optional=True),
    Workload("single client put gigabytes", single_client_put_gigabytes, unit="GB/s"),
    Workload("single client get gigabytes", single_client_get_gigabytes, unit="GB/s"),
    Workload("single client spill gigabytes", single_client_spill_gigabytes, unit="GB/s",
             optional=True),
    Workload("single client restore gigabytes", single_client_restore_gigabytes, unit="GB/s",
             optional=True),
    Workload("single client tasks and get batch", single_client_tasks_and_get_batch),
    Workload("single client get object containing 10k refs", single_client_get_object_containing_10k_refs),
    Workload("single client wait 1k refs", single_client_wait_1k_refs),
    Workload("single client tasks sync", single_client_tasks_sync),
    Workload("single client tasks async", single_client_tasks_async),
    Workload("multi client tasks async", multi_client_tasks_async, optional=True),
    Workload("1:1 actor calls sync", actor_calls_sync),
    Workload("1:1 actor calls async", actor_calls_async),
    Workload("1:1 actor calls concurrent", actor_calls_concurrent),
    Workload("1:n actor calls async", one_to_n_actor_calls_async),
    Workload("n:n actor calls async", n_to_n_actor_calls_async, optional=True),
    Workload("1:1 async-actor calls sync", async_actor_calls_sync),
    Workload("1:1 async-actor calls async", async_actor_calls_async),
    Workload("placement group create/removal", placement_group_create_removal),
]


def select_workloads(quick: bool, only: Optional[str]) -> List[Workload]:
    """The workloads one run executes, in order.

    `only` is a case-insensitive substring filter (like Ray's TESTS_TO_RUN);
    an explicit filter also includes optional workloads in quick mode.
    """
    if only:
        needle = only.lower()
        return [w for w in WORKLOADS if needle in w.name.lower()]
    return [w for w in WORKLOADS if not (quick and w.optional)]
