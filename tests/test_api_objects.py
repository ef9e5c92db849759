"""Objects against a real cluster: put/get/wait, timeouts, zero-copy numpy and
pyarrow, ObjectRef accessors and futures, and freeing store memory."""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import decimal
import enum
import fractions
import gc
import os
import time
import uuid

import numpy as np
import pytest

import zray
from zray import exceptions
from zray.core import memory_view
from conftest import Signal, pid_running, wait_for

CLUSTER = dict(num_cpus=2, object_store_memory=400 << 20)

pytestmark = pytest.mark.timeout(60)

MB = 1 << 20


@zray.remote
def echo(x):
    return x


@zray.remote
def wait_then(signal, value):
    zray.get(signal.wait.remote())
    return value


@dataclasses.dataclass
class Point:
    x: int
    y: float


class Color(enum.Enum):
    RED = 1


class Custom:
    def __init__(self, items):
        self.items = items

    def __eq__(self, other):
        return type(other) is Custom and other.items == self.items


VALUES = [
    0, -1, 2 ** 100, 3.5, float("inf"), complex(1, 2), True, None, "", "héllo", b"\x00bytes",
    bytearray(b"ba"), [], [1, [2, [3]]], (), (1, "a"), {"k": [1, 2], 3: None}, {1, 2}, frozenset({3}),
    range(5), slice(1, 5, 2), decimal.Decimal("1.25"), fractions.Fraction(1, 3),
    uuid.UUID(int=7), collections.OrderedDict(a=1), collections.Counter("aab"),
    Point(1, 2.0), Color.RED, Custom([1, {"x": b"y"}]), ValueError("as a value"),
    np.int64(5), np.arange(10, dtype=np.float32), b"x" * (200 * 1024),
    list(range(50_000)),
]


def _same(a, b):
    if isinstance(a, np.ndarray):
        return type(b) is np.ndarray and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, BaseException):
        return type(a) is type(b) and a.args == b.args
    return type(a) is type(b) and a == b


def store_used_bytes():
    return memory_view.node_stats()["used_bytes"]


def wait_store_empty(timeout=10.0):
    def empty():
        gc.collect()
        return store_used_bytes() == 0
    wait_for(empty, timeout, "the node's object store to be empty")


# ------------------------------------------------------------------ put/get ---
@pytest.mark.parametrize("value", VALUES, ids=[type(v).__name__ for v in VALUES])
def test_put_get_round_trip(cluster, value):
    assert _same(value, zray.get(zray.put(value)))


def test_values_round_trip_through_tasks(cluster):
    results = zray.get([echo.remote(v) for v in VALUES], timeout=30)
    for value, result in zip(VALUES, results):
        assert _same(value, result), (value, result)


def test_get_list_and_tuple(cluster):
    refs = [zray.put(i) for i in range(5)] + [echo.remote(5)]
    assert zray.get(refs) == list(range(6))
    assert zray.get(tuple(refs)) == list(range(6))
    assert zray.get([]) == []


def test_get_same_ref_twice_in_one_call(cluster):
    ref = echo.remote("dup")
    assert zray.get([ref, ref]) == ["dup", "dup"]


def test_put_of_objectref_is_refused_but_nested_ref_works(cluster):
    ref = zray.put(1)
    with pytest.raises(TypeError):
        zray.put(ref)
    outer = zray.put([ref])
    inner = zray.get(outer)[0]
    assert isinstance(inner, zray.ObjectRef) and zray.get(inner) == 1


def test_ref_in_returned_value(cluster):
    @zray.remote
    def make_ref():
        return [zray.put("inner")]

    [inner] = zray.get(make_ref.remote())
    assert zray.get(inner, timeout=10) == "inner"


# ---------------------------------------------------------------- timeouts ---
def test_get_timeout_zero_and_small(cluster):
    signal = Signal.remote()
    ref = wait_then.remote(signal, "late")
    with pytest.raises(exceptions.GetTimeoutError):
        zray.get(ref, timeout=0)
    with pytest.raises(exceptions.GetTimeoutError):
        zray.get(ref, timeout=0.05)
    with pytest.raises(TimeoutError):  # GetTimeoutError is also a TimeoutError
        zray.get([zray.put(1), ref], timeout=0.01)
    zray.get(signal.send.remote())
    assert zray.get(ref, timeout=30) == "late"
    assert zray.get(ref, timeout=0) == "late"
    assert zray.get(zray.put(3), timeout=0) == 3


# -------------------------------------------------------------------- wait ---
def test_wait_num_returns_and_timeout(cluster):
    signal = Signal.remote()
    fast = [echo.remote(i) for i in range(3)]
    slow = [wait_then.remote(signal, "slow") for _ in range(2)]
    refs = slow + fast
    ready, not_ready = zray.wait(refs, num_returns=3, timeout=30)
    assert set(ready) == set(fast) and set(not_ready) == set(slow)
    assert len(ready) + len(not_ready) == len(refs)

    ready, not_ready = zray.wait(refs, num_returns=5, timeout=0.1)
    assert set(ready) == set(fast) and set(not_ready) == set(slow)
    ready, not_ready = zray.wait(refs, num_returns=1, timeout=0)
    assert len(ready) == 1 and ready[0] in fast and len(not_ready) == 4

    zray.get(signal.send.remote())
    ready, not_ready = zray.wait(refs, num_returns=5, timeout=30)
    assert ready == refs and not_ready == []


def test_polling_wait_with_zero_timeout_sees_results(cluster):
    """A driver polling ``wait(timeout=0)`` between sleeps (never blocking in
    zray) still sees its tasks finish."""
    refs = [echo.remote(i) for i in range(5)]
    deadline = time.monotonic() + 30
    ready = []
    while len(ready) < 5:
        assert time.monotonic() < deadline, "polling wait(timeout=0) never saw the results"
        ready, _ = zray.wait(refs, num_returns=5, timeout=0)
        time.sleep(0.005)
    assert zray.get(refs, timeout=0) == list(range(5))


def test_wait_keeps_input_order(cluster):
    refs = [zray.put(i) for i in range(6)]
    ready, not_ready = zray.wait(refs, num_returns=4)
    assert ready == refs[:4] and not_ready == refs[4:]


def test_wait_fetch_local_false(cluster):
    ref = echo.remote(np.ones(MB))
    ready, not_ready = zray.wait([ref], timeout=30, fetch_local=False)
    assert ready == [ref] and not_ready == []


def test_wait_argument_errors(cluster):
    ref = zray.put(1)
    assert zray.wait([]) == ([], [])
    with pytest.raises(TypeError):
        zray.wait(ref)
    with pytest.raises(ValueError):
        zray.wait([ref, ref])
    with pytest.raises(ValueError):
        zray.wait([ref], num_returns=2)
    with pytest.raises(ValueError):
        zray.wait([ref], num_returns=0)
    with pytest.raises(ValueError):
        zray.wait([ref], timeout=-1)
    with pytest.raises(TypeError):
        zray.wait([ref, 1])


# -------------------------------------------------------- large / zero-copy ---
def test_50mb_numpy_round_trip_is_zero_copy(cluster):
    arr = np.arange(50 * MB // 8, dtype=np.int64)
    ref = zray.put(arr)
    out = zray.get(ref)
    assert out.flags.writeable is False
    assert out.dtype == arr.dtype and out.shape == arr.shape
    assert np.array_equal(out, arr)
    with pytest.raises(ValueError):
        out[0] = 1
    again = zray.get(ref)
    assert again.flags.writeable is False and again[-1] == arr[-1]
    del out, again, ref
    wait_store_empty()


def test_large_numpy_from_task_and_as_argument(cluster):
    @zray.remote
    def make(n):
        return np.full(n, 7, dtype=np.uint8)

    @zray.remote
    def total(a):
        return int(a.sum()), a.flags.writeable

    ref = make.remote(20 * MB)
    out = zray.get(ref, timeout=30)
    assert out.flags.writeable is False and out.nbytes == 20 * MB
    assert zray.get(total.remote(ref), timeout=30) == (7 * 20 * MB, False)
    # A large argument passed by value is put in the store too.
    assert zray.get(total.remote(np.ones(5 * MB, dtype=np.uint8)), timeout=30) == (5 * MB, False)
    del out, ref
    wait_store_empty()


def test_numpy_inside_containers(cluster):
    value = {"a": np.zeros((512, 512)), "b": [np.ones(300_000, dtype=np.int8), "s"]}
    out = zray.get(zray.put(value))
    assert np.array_equal(out["a"], value["a"]) and out["b"][1] == "s"
    assert out["a"].flags.writeable is False


def test_pyarrow_table_round_trip(cluster):
    pa = pytest.importorskip("pyarrow")
    table = pa.table({"x": np.arange(300_000), "s": ["v%d" % (i % 10) for i in range(300_000)]})
    out = zray.get(zray.put(table))
    assert isinstance(out, pa.Table) and out.equals(table)

    @zray.remote
    def summarize(t):
        return t.num_rows, t.column("x").to_numpy().sum()

    rows, total = zray.get(summarize.remote(table), timeout=30)
    assert rows == 300_000 and total == table.column("x").to_numpy().sum()
    small = pa.table({"a": [1, 2, 3]})
    assert zray.get(echo.remote(small), timeout=30).equals(small)


# --------------------------------------------------------------- ObjectRef ---
def test_object_ref_accessors(cluster):
    ref = zray.put("x")
    assert isinstance(ref.hex(), str) and bytes.fromhex(ref.hex()) == ref.binary()
    assert isinstance(ref.binary(), bytes) and len(ref.binary()) > 0
    other = echo.remote(1)
    assert other != ref and other.hex() != ref.hex()
    assert len({ref, ref, other}) == 2
    assert ref.hex() in repr(ref)


def test_object_ref_future(cluster):
    signal = Signal.remote()
    ref = wait_then.remote(signal, 99)
    future = ref.future()
    assert not future.done()
    zray.get(signal.send.remote())
    assert future.result(timeout=30) == 99

    @zray.remote
    def fail():
        raise KeyError("in future")

    with pytest.raises(KeyError):
        fail.remote().future().result(timeout=30)


def test_await_object_ref_in_asyncio(cluster):
    async def main():
        first = await echo.remote(1)
        values = await asyncio.gather(*[echo.remote(i) for i in range(5)])
        done = await asyncio.wait_for(zray.put("p").as_future(), 10)
        return first, values, done

    assert asyncio.run(main()) == (1, [0, 1, 2, 3, 4], "p")


# ------------------------------------------------------------------- freeing ---
def test_deleting_refs_frees_store_memory(cluster):
    wait_store_empty()
    refs = [zray.put(np.ones(5 * MB // 8)) for _ in range(4)]
    assert store_used_bytes() >= 20 * MB
    del refs
    wait_store_empty()


def test_task_returns_freed_after_refs_and_views_die(cluster):
    @zray.remote
    def big(i):
        return np.full(2 * MB, i, dtype=np.uint8)

    refs = [big.remote(i) for i in range(5)]
    views = zray.get(refs, timeout=30)
    assert [int(v[0]) for v in views] == list(range(5))
    del refs
    gc.collect()
    # Views still map the objects: their bytes must not be reused yet.
    assert [int(v[-1]) for v in views] == list(range(5))
    del views
    wait_store_empty()


def test_argument_objects_freed_after_task(cluster):
    @zray.remote
    def nbytes(a):
        return a.nbytes

    ref = zray.put(np.zeros(4 * MB, dtype=np.uint8))
    assert zray.get(nbytes.remote(ref), timeout=30) == 4 * MB
    del ref
    wait_store_empty()


def test_store_reuse_many_rounds(cluster):
    # 20 rounds of 40 MB in a 400 MB store only fit if frees really happen.
    for i in range(20):
        ref = zray.put(np.full(40 * MB, i % 256, dtype=np.uint8))
        assert zray.get(ref)[0] == i % 256
        del ref
        wait_store_empty()


def test_refs_passed_inside_containers_are_freed(cluster):
    @zray.remote
    def total(refs):
        return sum(float(zray.get(r).sum()) for r in refs)

    wait_store_empty()
    ref = zray.put(np.ones(MB // 8))
    assert zray.get(total.remote([ref]), timeout=30) == MB // 8
    del ref
    wait_store_empty(timeout=3)


# ---------------------------------------------------------------- ownership ---
@zray.remote
class Owner:
    def make(self, big):
        return [zray.put(np.ones(MB // 8) if big else "small")]

    def pid(self):
        return os.getpid()


@pytest.mark.parametrize("big", [False, True], ids=["inline", "in-store"])
def test_owner_death_raises_owner_died_error(cluster, big):
    owner = Owner.remote()
    pid = zray.get(owner.pid.remote())
    [inner] = zray.get(owner.make.remote(big))
    zray.kill(owner)    # asynchronous, as in Ray: a still-living owner would answer
    wait_for(lambda: not pid_running(pid), 15, "the owner process to exit")
    with pytest.raises(exceptions.OwnerDiedError):
        zray.get(inner, timeout=30)
    with pytest.raises(exceptions.ObjectLostError):  # OwnerDiedError is an ObjectLostError
        zray.get(inner, timeout=30)


def test_ref_from_an_earlier_session_raises_instead_of_hanging(no_cluster):
    @zray.remote
    def one():
        return 1

    zray.init(num_cpus=1)
    stale = one.remote()
    zray.get(stale)
    zray.shutdown()
    zray.init(num_cpus=1)
    try:
        with pytest.raises(exceptions.OwnerDiedError, match="earlier zray session"):
            zray.get(stale, timeout=10)
    finally:
        zray.shutdown()
