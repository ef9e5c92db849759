"""Borrowing: refs nested in arguments keep their objects alive exactly as
long as the callee holds them (real processes; store usage observed through
the raylet's node stats, never by sleeping)."""
import numpy as np
import pytest

import zray
from zray.core import memory_view
from conftest import wait_for

pytestmark = pytest.mark.timeout(90)

MB = 1 << 20


def store_used():
    return memory_view.node_stats()["used_bytes"]


def store_used_after_driver_frees():
    """Store usage once the driver has applied its dropped refs (the summary
    flushes them; the raylet sees the frees before the stats request)."""
    memory_view.local_object_summary()
    return store_used()


@zray.remote
class Keeper:
    def __init__(self):
        self.kept = None

    def keep(self, refs):
        self.kept = refs            # a list holding a ref we do not own

    def total(self):
        return float(zray.get(self.kept[0]).sum())

    def drop(self):
        self.kept = None

    def die(self):
        import os
        os._exit(1)


def test_actor_keeps_a_borrowed_object_alive_until_it_drops_it(cluster):
    wait_for(lambda: store_used() == 0, 10, "an empty store")
    keeper = Keeper.remote()
    ref = zray.put(np.ones(2 * MB // 8))
    zray.get(keeper.keep.remote([ref]))
    del ref                                    # the driver (owner) lets go
    assert store_used_after_driver_frees() > 0
    assert zray.get(keeper.total.remote(), timeout=30) == 2 * MB // 8
    zray.get(keeper.drop.remote())             # the borrower lets go: freed
    wait_for(lambda: store_used() == 0, 10, "the store to empty after the borrower dropped it")


def test_task_that_does_not_keep_the_ref_is_not_a_borrower(cluster):
    @zray.remote
    def peek(refs):
        return float(zray.get(refs[0]).sum())

    wait_for(lambda: store_used() == 0, 10, "an empty store")
    ref = zray.put(np.ones(MB // 8))
    assert zray.get(peek.remote([ref]), timeout=30) == MB // 8
    del ref
    wait_for(lambda: store_used() == 0, 10, "the store to empty")


def test_dead_borrower_no_longer_pins_the_object(cluster):
    wait_for(lambda: store_used() == 0, 10, "an empty store")
    keeper = Keeper.remote()
    ref = zray.put(np.ones(MB // 8))
    zray.get(keeper.keep.remote([ref]))
    del ref
    assert store_used() > 0
    keeper.die.remote()
    wait_for(lambda: store_used() == 0, 15, "the store to empty after the borrower died")


def test_borrower_of_a_borrower_keeps_the_object_until_it_drops_it(cluster):
    """driver (owner) -> task (borrower) -> actor (its borrower): the task
    ends and the driver lets go; the actor's copy still pins the object."""
    @zray.remote
    def hand_on(refs, keeper):
        zray.get(keeper.keep.remote(refs))

    wait_for(lambda: store_used() == 0, 10, "an empty store")
    keeper = Keeper.remote()
    ref = zray.put(np.ones(MB // 8))
    zray.get(hand_on.remote([ref], keeper), timeout=30)
    del ref
    assert store_used_after_driver_frees() > 0
    assert zray.get(keeper.total.remote(), timeout=30) == MB // 8
    zray.get(keeper.drop.remote())
    wait_for(lambda: store_used() == 0, 10, "the store to empty after the last borrower let go")


def test_refs_returned_by_a_task_live_while_the_caller_holds_them(cluster):
    """A task returns a ref to an object it owns (inside a list): the caller
    borrows it; it is freed once the caller drops the list and the ref."""
    @zray.remote
    def make():
        return [zray.put(np.full(MB // 8, 3.0))]

    wait_for(lambda: store_used() == 0, 10, "an empty store")
    outer = make.remote()
    inner = zray.get(outer, timeout=30)[0]
    assert float(zray.get(inner, timeout=30).sum()) == 3.0 * (MB // 8)
    assert store_used() > 0
    del outer
    assert store_used_after_driver_frees() > 0            # the ref alone keeps it
    assert float(zray.get(inner, timeout=30)[0]) == 3.0
    del inner
    wait_for(lambda: store_used() == 0, 10, "the store to empty after the caller let go")


def test_returned_list_alone_keeps_the_inner_object(cluster):
    """The returned object (not yet read) is what pins the ref inside it."""
    @zray.remote
    def make():
        return [zray.put(np.full(MB // 8, 5.0))]

    wait_for(lambda: store_used() == 0, 10, "an empty store")
    outer = make.remote()
    zray.wait([outer], timeout=30)
    assert store_used() > 0
    inner = zray.get(outer)[0]
    assert float(zray.get(inner)[0]) == 5.0
    del inner, outer
    wait_for(lambda: store_used() == 0, 10, "the store to empty")


def test_ref_inside_a_put_object_is_borrowed_by_its_reader(cluster):
    """put([ref]): an actor that reads the outer object with get() keeps the
    inner one alive after the driver dropped both."""
    @zray.remote
    class Reader:
        def read(self, boxes):
            self.inner = zray.get(boxes[0])[0]

        def total(self):
            return float(zray.get(self.inner).sum())

        def drop(self):
            self.inner = None

    wait_for(lambda: store_used() == 0, 10, "an empty store")
    reader = Reader.remote()
    inner = zray.put(np.ones(MB // 8))
    outer = zray.put([inner])
    del inner
    zray.get(reader.read.remote([outer]), timeout=30)
    del outer
    assert store_used_after_driver_frees() > 0
    assert zray.get(reader.total.remote(), timeout=30) == MB // 8
    zray.get(reader.drop.remote())
    wait_for(lambda: store_used() == 0, 10, "the store to empty after the reader let go")


def test_ref_in_actor_creation_arguments_is_borrowed_by_the_actor(cluster):
    @zray.remote
    class Holder:
        def __init__(self, refs):
            self.refs = refs

        def total(self):
            return float(zray.get(self.refs[0]).sum())

        def drop(self):
            self.refs = None

    wait_for(lambda: store_used() == 0, 10, "an empty store")
    ref = zray.put(np.ones(MB // 8))
    holder = Holder.remote([ref])
    zray.get(holder.total.remote(), timeout=30)     # created: the actor is counted now
    del ref
    assert store_used_after_driver_frees() > 0
    assert zray.get(holder.total.remote(), timeout=30) == MB // 8
    zray.get(holder.drop.remote())
    wait_for(lambda: store_used() == 0, 10, "the store to empty after the actor let go")


def test_task_echoing_the_callers_ref_back(cluster):
    @zray.remote
    def echo(refs):
        return refs

    wait_for(lambda: store_used() == 0, 10, "an empty store")
    ref = zray.put(np.ones(MB // 8))
    back = zray.get(echo.remote([ref]), timeout=30)[0]
    assert back == ref
    del ref
    assert store_used_after_driver_frees() > 0
    assert float(zray.get(back).sum()) == MB // 8
    del back
    wait_for(lambda: store_used() == 0, 10, "the store to empty")


def test_ref_travels_through_a_task_and_two_actors(cluster):
    """driver -> task (returns it inside a list) -> driver -> actor A -> actor B:
    each hop keeps the object alive until the last holder lets go."""
    @zray.remote
    class Hop:
        def take(self, box, next_hop):
            self.kept = box
            if next_hop is not None:
                zray.get(next_hop.take.remote(box, None))

        def read(self):
            return float(zray.get(self.kept[0]).sum())

        def drop(self):
            self.kept = None

    @zray.remote
    def rewrap(box):
        return [box[0]]

    wait_for(lambda: store_used() == 0, 10, "an empty store")
    first, second = Hop.remote(), Hop.remote()
    ref = zray.put(np.ones(MB // 8))
    outer = rewrap.remote([ref])
    box = zray.get(outer, timeout=30)
    zray.get(first.take.remote(box, second), timeout=30)
    del ref, outer, box
    assert store_used_after_driver_frees() > 0
    zray.get(first.drop.remote())
    assert zray.get(second.read.remote(), timeout=30) == MB // 8
    zray.get(second.drop.remote())
    wait_for(lambda: store_used() == 0, 10, "the store to empty after the last hop let go")


def test_ref_captured_in_a_remote_function_stays_pinned(cluster):
    """Keep last in this module: the captured object stays for the cluster's life."""
    box = [zray.put(np.arange(MB // 8))]      # the definition captures the list's ref

    @zray.remote
    def total_of_captured():
        return float(zray.get(box[0]).sum())

    expected = float(np.arange(MB // 8).sum())
    assert zray.get(total_of_captured.remote(), timeout=30) == expected
    object_id = box[0].binary()
    box.clear()         # the driver's own ref is gone; the exported definition keeps one
    summary = memory_view.local_object_summary()
    pinned = [o for o in summary["objects"] if o["object_id"] == object_id.hex()]
    assert pinned and pinned[0]["captured"]
    assert zray.get(total_of_captured.remote(), timeout=30) == expected


def test_a_task_reads_store_objects_in_its_arguments_without_waiting_on_the_owner(
        cluster, tmp_path):
    """As Ray's inline_object_status_in_refs: the owner writes where a store
    object lives into the pickled ref, so the task reads it while the owner
    (here a second driver, stopped with SIGSTOP) could not answer."""
    import os
    import signal
    import subprocess
    import sys
    marker = str(tmp_path / "total")
    program = (
        "import os, signal, time, numpy as np, zray\n"
        f"zray.init(address={zray.get_runtime_context().gcs_address!r})\n"
        "refs = [zray.put(np.ones(MB, dtype=np.uint8)) for _ in range(3)]\n"
        "@zray.remote\n"
        "def total(refs, marker):\n"
        "    open(marker + '.started', 'w').close()\n"
        "    while not os.path.exists(marker + '.go'):\n"
        "        time.sleep(0.01)\n"
        "    value = sum(int(zray.get(ref).sum()) for ref in refs)\n"
        "    with open(marker + '.tmp', 'w') as f:\n"
        "        f.write(str(value))\n"
        "    os.rename(marker + '.tmp', marker)\n"
        "    return value\n"
        f"ref = total.remote(refs, {marker!r})\n"
        f"while not os.path.exists({marker!r} + '.started'):\n"
        "    time.sleep(0.01)\n"
        "os.kill(os.getpid(), signal.SIGSTOP)   # the owner stops answering\n"
        "print(zray.get(ref, timeout=30))\n"
        "zray.shutdown()\n").replace("MB", str(MB))
    owner = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: owner.poll() is not None or _stopped(owner.pid), 60, "the owner to stop")
        open(marker + ".go", "w").close()
        wait_for(lambda: os.path.exists(marker), 20, "the task to read the stopped owner's objects")
        assert open(marker).read() == str(3 * MB)
    finally:
        if owner.poll() is None:
            os.kill(owner.pid, signal.SIGCONT)
        out, err = owner.communicate(timeout=60)
    assert owner.returncode == 0, err
    assert out.strip() == str(3 * MB)


def _stopped(pid: int) -> bool:
    import psutil
    try:
        return psutil.Process(pid).status() == psutil.STATUS_STOPPED
    except psutil.NoSuchProcess:
        return False
