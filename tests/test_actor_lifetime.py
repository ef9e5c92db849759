"""A non-detached actor lives while a handle to it lives anywhere, as in Ray.

Handles are counted through the actor's handle object (ids.actor_handle_object_id)
with the object borrowing protocol: the creator's own handles, copies passed
to tasks and actors, handles returned from tasks.  Handles looked up by name
are not counted (Ray's behaviour).  The cyclic GC is switched off in these
tests: dropping the last handle must be enough.
"""
from __future__ import annotations

import gc
import os
import time

import pytest

import zray
from conftest import pid_running, wait_for

CLUSTER = dict(num_cpus=2)

pytestmark = pytest.mark.timeout(90)


@zray.remote
class Target:
    def pid(self):
        return os.getpid()

    def slow(self, seconds):
        time.sleep(seconds)
        return "finished"


@zray.remote
class Holder:
    def __init__(self):
        self.handle = None

    def keep(self, handles):
        self.handle = handles[0]     # nested in a list: travels as a handle, not resolved
        return True

    def call_through(self):
        return zray.get(self.handle.pid.remote())

    def drop(self):
        self.handle = None
        return True


@zray.remote
def make_target():
    return [Target.remote()]


@pytest.fixture(autouse=True)
def no_cyclic_gc():
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _wait_exit(pid: int, what: str) -> None:
    wait_for(lambda: not pid_running(pid), 15, what)


def test_dropping_the_only_handle_ends_the_actor_without_gc(cluster):
    target = Target.remote()
    target.pid                                  # a looked-up method must not pin the handle
    pid = zray.get(target.pid.remote())
    del target
    _wait_exit(pid, "the actor to exit after its only handle was dropped")


def test_a_call_in_flight_finishes_before_the_actor_ends(cluster):
    target = Target.remote()
    pid = zray.get(target.pid.remote())
    pending = target.slow.remote(1.0)
    del target
    assert zray.get(pending, timeout=30) == "finished"
    _wait_exit(pid, "the actor to exit after its last call")


def test_a_temporary_handle_can_be_called_once(cluster):
    assert zray.get(Target.remote().pid.remote(), timeout=30) > 0


def test_a_handle_held_by_another_actor_keeps_it_alive(cluster):
    target = Target.remote()
    pid = zray.get(target.pid.remote())
    holder = Holder.remote()
    assert zray.get(holder.keep.remote([target]))
    del target
    time.sleep(1.5)                             # several ref-flush ticks in every process
    assert pid_running(pid)
    assert zray.get(holder.call_through.remote(), timeout=30) == pid
    assert zray.get(holder.drop.remote())
    _wait_exit(pid, "the actor to exit once its last holder dropped the handle")


def test_a_handle_returned_by_a_task_lives_with_the_caller_copy(cluster):
    handles = zray.get(make_target.remote())
    pid = zray.get(handles[0].pid.remote())
    time.sleep(1.5)                             # the creating task is long finished
    assert pid_running(pid)
    del handles
    _wait_exit(pid, "the actor to exit once the returned handle was dropped")


def test_a_handle_looked_up_by_name_is_not_counted(cluster):
    target = Target.options(name="looked-up").remote()
    pid = zray.get(target.pid.remote())
    by_name = zray.get_actor("looked-up")
    assert zray.get(by_name.pid.remote()) == pid
    del target
    _wait_exit(pid, "the actor to exit although a looked-up handle remains (as in Ray)")
    with pytest.raises(ValueError):
        zray.get_actor("looked-up")
    del by_name


def test_a_detached_actor_outlives_every_handle(cluster):
    target = Target.options(name="kept", lifetime="detached").remote()
    pid = zray.get(target.pid.remote())
    del target
    time.sleep(1.5)
    assert pid_running(pid)
    zray.kill(zray.get_actor("kept"))
    _wait_exit(pid, "the killed detached actor to exit")


@zray.remote
class Maker:
    def make(self):
        return [Target.remote()]

    def make_detached(self, name):
        Target.options(name=name, lifetime="detached").remote()
        return True


def test_an_actor_dies_with_the_worker_that_created_it(cluster):
    maker = Maker.remote()
    (made,) = zray.get(maker.make.remote())
    pid = zray.get(made.pid.remote())
    zray.kill(maker)                   # the owner's process goes; its actors go with it (Ray)
    _wait_exit(pid, "the actor to exit with its owner")
    with pytest.raises(zray.exceptions.RayActorError, match="owner has died"):
        zray.get(made.pid.remote(), timeout=30)


def test_a_detached_actor_outlives_the_worker_that_created_it(cluster):
    maker = Maker.remote()
    zray.get(maker.make_detached.remote("made-detached"))
    kept = zray.get_actor("made-detached")
    pid = zray.get(kept.pid.remote())
    zray.kill(maker)
    time.sleep(1.5)
    assert pid_running(pid) and zray.get(kept.pid.remote()) == pid
    zray.kill(kept)
    _wait_exit(pid, "the killed detached actor to exit")
