"""Streaming generators (Ray's ObjectRefGenerator): a generator task or actor
method hands each yielded value to its caller as it is yielded."""
from __future__ import annotations

import asyncio
import os
import time

import numpy as np
import pytest

import zray
from zray import exceptions
from conftest import Signal, pid_running, wait_for

CLUSTER = dict(num_cpus=2)

pytestmark = pytest.mark.timeout(60)


@zray.remote
def count_to(n):
    for i in range(n):
        yield i


@zray.remote
def wait_between(signal):
    yield "first"
    zray.get(signal.wait.remote())
    yield "second"


@zray.remote
def fail_after(n):
    for i in range(n):
        yield i
    raise ValueError(f"failed after {n}")


@zray.remote
def big_items(n):
    for i in range(n):
        yield np.full(1 << 20, i, dtype=np.int64)      # 8 MiB each: the shared-memory store


@zray.remote
def not_a_generator():
    return 5


@zray.remote
class Streamer:
    def __init__(self):
        self.calls = 0

    def items(self, n):
        for i in range(n):
            self.calls += 1
            yield i * 10

    def num_calls(self):
        return self.calls


@zray.remote
class AsyncStreamer:
    async def items(self, n):
        for i in range(n):
            await asyncio.sleep(0.01)
            yield i


def _store_used():
    summary = zray.util.memory_summary(as_dict=True)
    return sum(node["used_bytes"] for node in summary["nodes"])


def test_a_generator_function_returns_an_object_ref_generator(cluster):
    gen = count_to.remote(4)
    assert type(gen).__name__ == "ObjectRefGenerator"
    refs = list(gen)
    assert all(isinstance(ref, zray.ObjectRef) for ref in refs)
    assert zray.get(refs) == [0, 1, 2, 3]
    assert zray.get(gen.completed()) == 4
    assert list(count_to.remote(0)) == []


def test_items_arrive_while_the_task_still_runs(cluster):
    signal = Signal.remote()
    gen = wait_between.remote(signal)
    assert zray.get(next(gen), timeout=30) == "first"     # the task is blocked on the signal
    zray.get(signal.send.remote())
    assert zray.get(next(gen), timeout=30) == "second"
    with pytest.raises(StopIteration):
        next(gen)


def test_an_error_comes_as_the_last_ref(cluster):
    gen = fail_after.remote(2)
    refs = list(gen)
    assert zray.get(refs[:2]) == [0, 1]
    assert len(refs) == 3
    with pytest.raises(ValueError, match="failed after 2"):
        zray.get(refs[2])
    with pytest.raises(exceptions.RayTaskError):
        zray.get(gen.completed())


def test_large_items_are_zero_copy_and_freed_with_their_refs(cluster):
    before = _store_used()
    refs = list(big_items.remote(3))
    arrays = zray.get(refs)
    assert [int(a[0]) for a in arrays] == [0, 1, 2]
    assert not arrays[0].flags.writeable
    del arrays, refs
    wait_for(lambda: _store_used() <= before, 10, "the items' store copies to be freed")


def test_a_dropped_generator_frees_what_it_did_not_hand_out(cluster):
    before = _store_used()
    gen = big_items.remote(4)
    first = next(gen)
    assert int(zray.get(first)[0]) == 0
    assert zray.get(gen.completed(), timeout=30) == 4      # every item reported
    del gen, first
    wait_for(lambda: _store_used() <= before, 10, "unconsumed items to be freed")


def test_actor_generator_methods_keep_call_order(cluster):
    streamer = Streamer.remote()
    first, second = streamer.items.remote(3), streamer.items.remote(2)
    assert zray.get(list(first)) == [0, 10, 20]
    assert zray.get(list(second)) == [0, 10]
    assert zray.get(streamer.num_calls.remote()) == 5


def test_threaded_actor_generators(cluster):
    streamer = Streamer.options(max_concurrency=3).remote()
    gens = [streamer.items.remote(4) for _ in range(3)]
    assert [zray.get(list(gen), timeout=30) for gen in gens] == [[0, 10, 20, 30]] * 3


def test_async_actor_generators_and_async_for(cluster):
    streamer = AsyncStreamer.remote()

    async def consume():
        return [await ref async for ref in streamer.items.remote(5)]
    assert asyncio.run(consume()) == [0, 1, 2, 3, 4]


def test_explicit_num_returns_still_splits_a_generator(cluster):
    a, b = count_to.options(num_returns=2).remote(2)
    assert zray.get([a, b]) == [0, 1]


def test_bad_streaming_use_is_named(cluster):
    gen = not_a_generator.options(num_returns="streaming").remote()
    refs = list(gen)
    with pytest.raises(TypeError, match="not a generator"):
        zray.get(refs[-1])
    with pytest.raises(ValueError, match="only be used with generator functions"):
        not_a_generator.options(num_returns="dynamic").remote()
    with pytest.raises(TypeError, match="cannot be passed"):
        zray.put(count_to.remote(1))
    started = time.monotonic()
    with pytest.raises(ValueError, match="num_returns"):
        count_to.options(num_returns="lots")
    assert time.monotonic() - started < 5


@zray.remote
def big_then_die_once(marker):
    yield np.full(1 << 20, 1.0)
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)                        # the item may never reach the caller
    yield np.full(1 << 20, 2.0)


@zray.remote(max_retries=1)
def put_then_die_once(marker):
    ref = zray.put(np.full(1 << 20, 3.0))  # large: sealed in the store before the crash
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return float(zray.get(ref)[0])


def test_a_retried_generator_reuses_what_its_crashed_attempt_stored(cluster, tmp_path):
    refs = list(big_then_die_once.remote(str(tmp_path / "crashed")))
    assert [float(zray.get(ref)[0]) for ref in refs] == [1.0, 2.0]


def test_a_retried_task_reuses_a_put_its_crashed_attempt_sealed(cluster, tmp_path):
    assert zray.get(put_then_die_once.remote(str(tmp_path / "crashed")), timeout=60) == 3.0


@zray.remote
def wait_first(signal):
    zray.get(signal.wait.remote())
    yield "after the signal"


def test_wait_on_generators(cluster):
    signal = Signal.remote()
    gen = wait_first.remote(signal)
    assert isinstance(gen, zray.ObjectRefGenerator)
    plain = zray.put(1)
    ready, not_ready = zray.wait([gen, plain], num_returns=2, timeout=0.5)
    assert ready == [plain] and not_ready == [gen]          # no item yet
    zray.get(signal.send.remote())
    ready, _ = zray.wait([gen], timeout=30)
    assert ready == [gen]
    assert zray.get(next(gen)) == "after the signal"
    ready, _ = zray.wait([gen], timeout=30)                 # finished: next() would not block
    assert ready == [gen]
    with pytest.raises(StopIteration):
        next(gen)


# ----------------------------------------------------------- backpressure ---
@zray.remote(num_cpus=0)
class Produced:
    """What a generator has produced so far (it reports before each yield)."""
    def __init__(self):
        self.items = []

    def add(self, item):
        self.items.append(item)

    def count(self):
        return len(self.items)

    def items_so_far(self):
        return list(self.items)


@zray.remote(_generator_backpressure_num_objects=2)
def reported(log, n):
    for i in range(n):
        zray.get(log.add.remote(i))
        yield i


def test_backpressure_pauses_the_generator_until_items_are_taken(cluster):
    log = Produced.remote()
    gen = reported.remote(log, 8)
    wait_for(lambda: zray.get(log.count.remote()) == 2, 20, "two items")
    time.sleep(0.5)
    assert zray.get(log.count.remote()) == 2          # two untaken items: it waits
    assert zray.get(next(gen)) == 0
    wait_for(lambda: zray.get(log.count.remote()) == 3, 20, "one more after a next()")
    assert [zray.get(ref) for ref in gen] == list(range(1, 8))


def test_a_dropped_backpressured_generator_runs_to_its_end(cluster):
    log = Produced.remote()
    gen = reported.remote(log, 6)
    assert zray.get(next(gen)) == 0
    del gen
    wait_for(lambda: zray.get(log.count.remote()) == 6, 20, "the generator to finish")


def test_backpressure_on_actor_methods(cluster):
    streamer = Streamer.remote()
    gen = streamer.items.options(_generator_backpressure_num_objects=1).remote(5)
    assert [zray.get(ref) for ref in gen] == [0, 10, 20, 30, 40]
    async_streamer = AsyncStreamer.remote()
    gen = async_streamer.items.options(_generator_backpressure_num_objects=2).remote(6)
    assert [zray.get(ref) for ref in gen] == list(range(6))
    with pytest.raises(ValueError, match="_generator_backpressure_num_objects"):
        reported.options(_generator_backpressure_num_objects=0)


@zray.remote(_generator_backpressure_num_objects=2)
def reported_with_pid(log, n):
    zray.get(log.add.remote(os.getpid()))
    for i in range(n):
        zray.get(log.add.remote(i))
        yield i


@zray.remote
class Consumer:
    def start(self, log):
        self.gen = reported_with_pid.remote(log, 10)
        return zray.get(next(self.gen))


def test_a_backpressured_generator_ends_when_its_caller_dies(cluster):
    """Nobody will take the rest: the generator must not wait forever.  Its
    worker ends with its owner, as Ray's raylet ends workers leased to a
    worker that died."""
    log = Produced.remote()
    consumer = Consumer.remote()
    assert zray.get(consumer.start.remote(log), timeout=30) == 0
    wait_for(lambda: zray.get(log.count.remote()) == 4, 20, "the generator to wait")
    generator_pid = zray.get(log.items_so_far.remote())[0]
    zray.kill(consumer)
    wait_for(lambda: not pid_running(generator_pid), 20, "the generator's worker to end")


# ---------------------------------------------- num_returns="dynamic" (older form) ---
def test_dynamic_returns_one_ref_to_all_the_items(cluster):
    with pytest.warns(DeprecationWarning, match="streaming"):
        ref = count_to.options(num_returns="dynamic").remote(4)
    assert isinstance(ref, zray.ObjectRef)
    items = zray.get(ref, timeout=30)
    assert isinstance(items, zray.DynamicObjectRefGenerator) and len(items) == 4
    inner = list(items)
    del ref, items            # the caller keeps the items it holds refs to
    assert zray.get(inner) == [0, 1, 2, 3]
    streamer = Streamer.remote()
    assert zray.get(list(zray.get(
        streamer.items.options(num_returns="dynamic").remote(3), timeout=30))) == [0, 10, 20]


def test_dynamic_error_is_the_last_item(cluster):
    with pytest.warns(DeprecationWarning):
        items = list(zray.get(fail_after.options(num_returns="dynamic").remote(2), timeout=30))
    assert len(items) == 3 and zray.get(items[:2]) == [0, 1]
    with pytest.raises(ValueError, match="failed after 2"):
        zray.get(items[2])


@zray.remote
def endless(delay):
    i = 0
    while True:
        time.sleep(delay)
        yield i
        i += 1


def test_cancelling_a_generator_ends_its_stream_with_the_cancel(cluster):
    for gen in (endless.remote(0.05),
                endless.options(_generator_backpressure_num_objects=1).remote(0)):
        time.sleep(0.3)
        zray.cancel(gen)
        with pytest.raises(exceptions.TaskCancelledError):
            for ref in gen:
                zray.get(ref, timeout=30)
    finished = count_to.remote(2)
    assert zray.get(finished.completed(), timeout=30) == 2
    zray.cancel(finished)                     # too late: its items are all there
    assert [zray.get(ref) for ref in finished] == [0, 1]
