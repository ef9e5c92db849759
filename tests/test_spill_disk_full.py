"""Pressure without disk room: the spill directory is a tiny tmpfs made by
the test, so spilling fails; put raises ObjectStoreFullError saying why, and
the cluster keeps working afterwards."""
import json
import re
import os
import subprocess
import tempfile

import numpy as np
import pytest

import zray
from zray.core import memory_view

pytestmark = pytest.mark.timeout(120)

MB = 1 << 20


@pytest.fixture()
def tiny_spill_dir():
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path = tempfile.mkdtemp(prefix="zray-tiny-spill-")
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", path],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        os.rmdir(path)
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], check=False)
        os.rmdir(path)


def test_full_store_and_full_spill_disk(no_cluster, tiny_spill_dir):
    config = {"type": "filesystem", "params": {"directory_path": tiny_spill_dir}}
    zray.init(num_cpus=1, object_store_memory=100 * MB,
              _system_config={"object_store_full_timeout_s": 2,
                              "object_spilling_config": json.dumps(config)})
    try:
        refs = [zray.put(np.full(30 * MB, i, dtype=np.uint8)) for i in range(3)]
        with pytest.raises(zray.exceptions.ObjectStoreFullError) as info:
            zray.put(np.full(30 * MB, 9, dtype=np.uint8))
        message = str(info.value)
        assert re.search(r"cannot allocate 314\d{5} bytes", message)   # the size that did not fit
        assert "spilling to" in message and tiny_spill_dir in message and "failed" in message
        assert memory_view.node_stats()["spilled_objects"] == 0

        # Nothing was lost, and the cluster keeps working.
        assert [int(zray.get(r)[0]) for r in refs] == [0, 1, 2]
        del refs[0]
        ref = zray.put(np.full(30 * MB, 9, dtype=np.uint8))
        assert int(zray.get(ref)[-1]) == 9

        @zray.remote
        def add(a, b):
            return a + b

        assert zray.get(add.remote(1, 2), timeout=30) == 3
    finally:
        zray.shutdown()
    assert os.listdir(tiny_spill_dir) == []          # the raylet removed its spill store


def test_bad_spilling_config_is_rejected(no_cluster):
    with pytest.raises(ValueError, match="directory_path"):
        zray.init(num_cpus=1, _system_config={"object_spilling_config": {"type": "filesystem"}})
    with pytest.raises(ValueError, match="filesystem"):
        zray.init(num_cpus=1, _system_config={"object_spilling_config": '{"type": "s3"}'})
    assert not zray.is_initialized()
