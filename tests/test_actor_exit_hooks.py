"""How an actor leaves, as in Ray: on purpose (exit_actor, __ray_terminate__)
or gracefully (its handles are gone) it runs __ray_shutdown__ and the
process's atexit handlers, and it is not restarted; ray.kill runs neither."""
from __future__ import annotations

import atexit
import asyncio
import gc
import os

import pytest

import zray
from conftest import pid_running, wait_for

CLUSTER = dict(num_cpus=2)

pytestmark = pytest.mark.timeout(90)


def _mark(path: str, text: str) -> None:
    with open(path, "a") as f:
        f.write(text + "\n")


@zray.remote(max_restarts=2)
class Tidy:
    def __init__(self, marks: str):
        self.marks = marks
        atexit.register(_mark, marks, "atexit")

    def __ray_shutdown__(self):
        _mark(self.marks, "shutdown")

    def pid(self):
        return os.getpid()

    def leave(self):
        zray.actor.exit_actor()


@zray.remote
class AsyncTidy:
    def __init__(self, marks: str):
        self.marks = marks

    async def __ray_shutdown__(self):
        await asyncio.sleep(0)
        _mark(self.marks, "async-shutdown")

    async def pid(self):
        return os.getpid()


def _marks(path) -> list:
    return open(path).read().split() if os.path.exists(path) else []


def test_exit_actor_runs_the_hooks_and_is_not_restarted(cluster, tmp_path):
    marks = str(tmp_path / "marks")
    actor = Tidy.remote(marks)
    pid = zray.get(actor.pid.remote(), timeout=30)
    with pytest.raises(zray.exceptions.ActorDiedError, match="exit_actor"):
        zray.get(actor.leave.remote(), timeout=30)
    wait_for(lambda: not pid_running(pid), 15, "the actor's process to exit")
    assert _marks(marks) == ["shutdown", "atexit"]
    # max_restarts=2, but leaving on purpose is not a crash.
    with pytest.raises(zray.exceptions.RayActorError, match="INTENDED_USER_EXIT"):
        zray.get(actor.pid.remote(), timeout=30)


def test_ray_terminate_runs_the_hooks_after_earlier_calls(cluster, tmp_path):
    marks = str(tmp_path / "marks")
    actor = Tidy.remote(marks)
    pid = zray.get(actor.pid.remote(), timeout=30)
    actor.__ray_terminate__.remote()
    wait_for(lambda: not pid_running(pid), 15, "the actor's process to exit")
    assert _marks(marks) == ["shutdown", "atexit"]
    with pytest.raises(zray.exceptions.RayActorError):
        zray.get(actor.pid.remote(), timeout=30)


def test_an_actor_whose_handles_are_gone_shuts_down_gracefully(cluster, tmp_path):
    marks = str(tmp_path / "marks")
    actor = AsyncTidy.remote(marks)
    pid = zray.get(actor.pid.remote(), timeout=30)
    del actor
    gc.collect()
    wait_for(lambda: not pid_running(pid), 15, "the actor's process to exit")
    assert _marks(marks) == ["async-shutdown"]


def test_kill_runs_no_hooks(cluster, tmp_path):
    marks = str(tmp_path / "marks")
    actor = Tidy.remote(marks)
    pid = zray.get(actor.pid.remote(), timeout=30)
    zray.kill(actor)
    wait_for(lambda: not pid_running(pid), 15, "the actor's process to exit")
    assert _marks(marks) == []


@zray.remote
class LeavesAtOnce:
    def __init__(self, marks: str):
        atexit.register(_mark, marks, "atexit")
        zray.actor.exit_actor()

    def pid(self):
        return os.getpid()


def test_exit_actor_in_the_constructor_runs_atexit_handlers(cluster, tmp_path):
    marks = str(tmp_path / "marks")
    actor = LeavesAtOnce.remote(marks)
    with pytest.raises(zray.exceptions.RayActorError):
        zray.get(actor.pid.remote(), timeout=30)
    wait_for(lambda: _marks(marks) == ["atexit"], 15, "the atexit handler to run")


def test_empty_actor_names_are_refused(cluster, tmp_path):
    with pytest.raises(ValueError, match="empty string"):
        Tidy.options(name="").remote(str(tmp_path / "marks"))
    with pytest.raises(ValueError, match="empty string"):
        Tidy.options(namespace="").remote(str(tmp_path / "marks"))


@zray.remote
class LeavesFromATask:
    """exit_actor() in an asyncio task that is not a call (Ray's periodic check)."""

    def __init__(self, marks: str, from_init: bool):
        self.marks = marks
        atexit.register(_mark, marks, "atexit")
        if from_init:   # __init__ runs inside the actor's event loop, as in Ray
            asyncio.create_task(self.leave_soon())

    async def start(self):
        asyncio.create_task(self.leave_soon())

    async def leave_soon(self):
        await asyncio.sleep(0.2)
        zray.actor.exit_actor()
        _mark(self.marks, "after-exit")

    async def pid(self):
        return os.getpid()


@pytest.mark.parametrize("from_init", [False, True])
def test_exit_actor_in_a_background_asyncio_task_ends_the_actor(cluster, tmp_path, from_init):
    marks = str(tmp_path / "marks")
    actor = LeavesFromATask.remote(marks, from_init)
    if not from_init:
        zray.get(actor.start.remote(), timeout=30)
    wait_for(lambda: _marks(marks) == ["atexit"], 15, "the actor to leave")
    with pytest.raises(zray.exceptions.RayActorError, match="INTENDED_USER_EXIT"):
        zray.get(actor.pid.remote(), timeout=30)


@zray.remote
class CatchesItsExit:
    def __init__(self, marks: str):
        atexit.register(_mark, marks, "atexit")

    def leave_sync(self):
        try:
            zray.actor.exit_actor()
        except SystemExit:       # Ray raises SystemExit in a sync actor
            return "caught"


@zray.remote
class AsyncCatchesItsExit:
    def __init__(self, marks: str):
        atexit.register(_mark, marks, "atexit")

    async def leave(self):
        try:
            zray.actor.exit_actor()
        except zray.exceptions.AsyncioActorExit:   # and this in an async actor
            return "caught"


@pytest.mark.parametrize("kind", [CatchesItsExit, AsyncCatchesItsExit])
def test_an_actor_that_catches_its_exit_still_leaves(cluster, tmp_path, kind):
    marks = str(tmp_path / "marks")
    actor = kind.remote(marks)
    method = actor.leave_sync if kind is CatchesItsExit else actor.leave
    with pytest.raises(zray.exceptions.ActorDiedError, match="exit_actor"):
        zray.get(method.remote(), timeout=30)
    wait_for(lambda: _marks(marks) == ["atexit"], 15, "the actor to leave")


@zray.remote
class LeavesFromAThread:
    def __init__(self, marks: str):
        atexit.register(_mark, marks, "atexit")

    def start(self):
        import threading
        threading.Thread(target=zray.actor.exit_actor, daemon=True).start()

    def pid(self):
        return os.getpid()


def test_exit_actor_in_a_thread_of_a_sync_actor_ends_it_once_idle(cluster, tmp_path):
    marks = str(tmp_path / "marks")
    actor = LeavesFromAThread.remote(marks)
    zray.get(actor.start.remote(), timeout=30)
    wait_for(lambda: _marks(marks) == ["atexit"], 15, "the actor to leave")
    with pytest.raises(zray.exceptions.RayActorError):
        zray.get(actor.pid.remote(), timeout=30)
