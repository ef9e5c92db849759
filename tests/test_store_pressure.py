"""A full object store makes creates wait for space, then fail clearly."""
import logging
import threading

import numpy as np

import pytest

import zray
from zray.core import memory_view
from conftest import small_store_cluster, wait_for

pytestmark = pytest.mark.timeout(90)

MB = 1 << 20


@pytest.fixture()
def small_store(no_cluster):
    with small_store_cluster(48, 1.5):
        yield


def test_put_waits_for_space_freed_by_the_owner(small_store):
    first = zray.put(np.ones(30 * MB, dtype=np.uint8))
    reading = zray.get(first)      # pinned by a reader, so it cannot be spilled
    done = {}

    def second_put():
        done["ref"] = zray.put(np.full(30 * MB, 7, dtype=np.uint8))

    thread = threading.Thread(target=second_put)
    thread.start()
    wait_for(lambda: memory_view.node_stats()["used_bytes"] >= 30 * MB, 10, "the first object")
    del first, reading                           # frees room: the waiting create proceeds
    thread.join(timeout=20)
    assert not thread.is_alive()
    assert int(zray.get(done["ref"])[0]) == 7


def test_full_store_raises_object_store_full_error_naming_sizes(small_store):
    held = zray.put(np.ones(30 * MB, dtype=np.uint8))
    reading = zray.get(held)       # a reader's pin: the object cannot be spilled
    with pytest.raises(zray.exceptions.ObjectStoreFullError) as info:
        zray.put(np.ones(30 * MB, dtype=np.uint8))
    message = str(info.value)
    assert "after waiting" in message and f"capacity {48 * MB}" in message
    # The cluster keeps working after the error.
    assert zray.get(zray.put("still fine")) == "still fine"
    del reading, held


def test_object_larger_than_the_store_fails_at_once(small_store):
    with pytest.raises(zray.exceptions.ObjectStoreFullError, match="can never fit"):
        zray.put(np.ones(64 * MB, dtype=np.uint8))


def test_ray_system_config_keys_zray_lacks_are_named_and_ignored(no_cluster, caplog):
    """Ray programs and fixtures pass Ray's tuning keys: init starts and says
    which ones it ignores; a key that cannot be a config name is refused."""
    with pytest.raises(ValueError, match="config names"):
        zray.init(_system_config={"not a name": 1})
    with pytest.raises(TypeError, match="must be a dict"):
        zray.init(_system_config=[("object_timeout_milliseconds", 200)])
    with caplog.at_level(logging.WARNING, logger="zray"):
        zray.init(num_cpus=1, _system_config={"object_timeout_milliseconds": 200})
    try:
        assert "object_timeout_milliseconds" in caplog.text and "ignores" in caplog.text
        assert zray.get(zray.put(1)) == 1
    finally:
        zray.shutdown()


def test_an_object_left_unsealed_by_a_vanished_writer_can_be_created_again(cluster):
    """A writer that created an object and went away without sealing it (a
    worker killed mid-write) does not block a retried task's create of it."""
    import zmq
    from zray import ids
    from zray.core import process_state
    from zray.sockets import messages as m
    cw = process_state.worker
    object_id = ids.object_id_for_put(ids.root_task_id(cw.job_id), 7)
    writer = zmq.Context.instance().socket(zmq.DEALER)
    try:
        writer.connect(cw.raylet_endpoint)        # never registers: a client already gone
        writer.send(m.encode(m.CreateObject(1, object_id, 4096)))
        assert writer.poll(10_000)
        reply = m.decode(writer.recv())
        assert reply.offset >= 0 and reply.error_code == m.CREATE_OK
    finally:
        writer.close(0)
    size = cw.write_to_store(object_id, b"x" * 100, [])
    assert size > 0
    cw.send_raylet(m.FreeObjects([object_id]))
