"""zray.util.queue.Queue (Ray's ray.util.queue) across tasks and actors."""
from __future__ import annotations

import asyncio

import pytest

import zray
from zray.util.queue import Empty, Full, Queue

CLUSTER = dict(num_cpus=2)

pytestmark = pytest.mark.timeout(60)


@zray.remote
def producer(queue, items):
    for item in items:
        queue.put(item)
    return len(items)


@zray.remote
def consumer(queue, count):
    return [queue.get(timeout=30) for _ in range(count)]


def test_items_flow_between_tasks_in_order(cluster):
    queue = Queue()
    got = consumer.remote(queue, 5)
    assert zray.get(producer.remote(queue, list(range(5)))) == 5
    assert zray.get(got, timeout=30) == [0, 1, 2, 3, 4]
    assert queue.empty() and len(queue) == 0
    queue.shutdown()


def test_bounded_queue_blocks_times_out_and_raises(cluster):
    queue = Queue(maxsize=2)
    queue.put("a")
    queue.put_nowait("b")
    assert queue.full() and queue.qsize() == 2
    with pytest.raises(Full):
        queue.put_nowait("c")
    with pytest.raises(Full):
        queue.put("c", timeout=0.2)
    with pytest.raises(Full):
        queue.put_nowait_batch(["c"])
    assert queue.get() == "a" and queue.get_nowait() == "b"
    with pytest.raises(Empty):
        queue.get(timeout=0.2)
    with pytest.raises(Empty):
        queue.get(block=False)
    queue.put_nowait_batch([1, 2])
    assert queue.get_nowait_batch(2) == [1, 2]
    with pytest.raises(Empty):
        queue.get_nowait_batch(1)
    with pytest.raises(ValueError):
        queue.get(timeout=-1)
    queue.shutdown(force=True)


def test_async_put_and_get(cluster):
    queue = Queue()

    async def roundtrip():
        await queue.put_async("x")
        return await queue.get_async(timeout=10)
    assert asyncio.run(roundtrip()) == "x"
    queue.shutdown()
