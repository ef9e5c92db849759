"""Smaller pieces of Ray's API that ordinary Ray programs use: assigned
resources, GPU ids, the built-in actor methods, and ``ray.util`` lookups."""
from __future__ import annotations

import os
import time
import subprocess
import sys

import psutil
import pytest

import zray
from zray import exceptions
from conftest import wait_for

CLUSTER = dict(num_cpus=2, resources={"widget": 2})

pytestmark = pytest.mark.timeout(60)


@zray.remote
def assigned():
    return zray.get_runtime_context().get_assigned_resources()


@zray.remote
def gpu_ids():
    return zray.get_gpu_ids()


@zray.remote
class Probe:
    def assigned(self):
        return zray.get_runtime_context().get_assigned_resources()

    def pid(self):
        return os.getpid()


def test_assigned_resources_of_tasks_actors_and_the_driver(cluster):
    assert zray.get(assigned.remote()) == {"CPU": 1.0}
    assert zray.get(assigned.options(num_cpus=0.5, resources={"widget": 1}).remote()) == {
        "CPU": 0.5, "widget": 1.0}
    assert zray.get(assigned.options(num_cpus=0).remote()) == {}
    assert zray.get(Probe.remote().assigned.remote()) == {}            # actors hold 0 CPU by default
    assert zray.get(Probe.options(num_cpus=1).remote().assigned.remote()) == {"CPU": 1.0}
    assert zray.get_runtime_context().get_assigned_resources() == {}


@zray.remote(max_concurrency=2)
class ThreadedProbe:
    def pid(self):
        return os.getpid()

    def leave(self):
        zray.actor.exit_actor()


def test_calls_just_before_an_exit_still_get_their_replies(cluster):
    # The exit must not drop replies still queued in the worker's sockets.
    for _ in range(10):
        probe = Probe.remote()
        calls = [probe.pid.remote() for _ in range(5)]
        probe.__ray_terminate__.remote()
        assert len(set(zray.get(calls, timeout=30))) == 1
    for _ in range(5):
        threaded = ThreadedProbe.remote()
        first = threaded.pid.remote()
        assert zray.get(first, timeout=30) > 0
        calls = [threaded.pid.remote() for _ in range(3)]
        zray.get(calls, timeout=30)
        threaded.leave.remote()


def test_gpu_ids_are_empty_without_gpus(cluster):
    assert zray.get_gpu_ids() == []
    assert zray.get(gpu_ids.remote()) == []


def test_ray_ready_and_ray_terminate(cluster):
    probe = Probe.remote()
    assert zray.get(probe.__ray_ready__.remote(), timeout=30) is True
    pid = zray.get(probe.pid.remote())
    before = probe.pid.remote()
    ended = probe.__ray_terminate__.remote()
    assert zray.get(before, timeout=30) == pid          # calls queued before it still run
    with pytest.raises(exceptions.ActorDiedError):
        zray.get(ended, timeout=30)
    with pytest.raises(exceptions.RayActorError):
        zray.get(probe.pid.remote(), timeout=30)
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
             15, "the terminated actor to exit")
    with pytest.raises(AttributeError):
        probe.__no_such_dunder__


def test_util_is_there_after_a_plain_import():
    done = subprocess.run([sys.executable, "-c", "import zray as ray; print(ray.util.ActorPool.__name__)"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ActorPool"


def test_list_named_actors_and_node_ip(cluster):
    here = Probe.options(name="listed").remote()
    there = Probe.options(name="elsewhere", namespace="other-ns").remote()
    zray.get([here.__ray_ready__.remote(), there.__ray_ready__.remote()])
    assert "listed" in zray.util.list_named_actors()
    assert "elsewhere" not in zray.util.list_named_actors()
    everywhere = zray.util.list_named_actors(all_namespaces=True)
    assert {"name": "elsewhere", "namespace": "other-ns"} in everywhere
    assert zray.util.get_node_ip_address() == zray.nodes()[0]["NodeManagerAddress"]
    zray.kill(here)
    zray.kill(there)


@zray.remote
class NamedProbe:
    def context(self):
        ctx = zray.get_runtime_context()
        return ctx.get_actor_name(), ctx.get_task_name(), ctx.runtime_env


@zray.remote
def task_context():
    ctx = zray.get_runtime_context()
    return ctx.get_task_name(), ctx.get_placement_group_id(), ctx.is_canceled()


def test_runtime_context_names_and_session_details(cluster):
    ctx = zray.get_runtime_context()
    assert ctx.get_actor_name() is None and ctx.get_task_name() is None   # the driver
    assert ctx.get_placement_group_id() is None
    with pytest.warns(DeprecationWarning, match="get_placement_group_id"):
        assert ctx.current_placement_group_id.is_nil()
    assert not ctx.should_capture_child_tasks_in_placement_group
    host, port = ctx.gcs_address.rsplit(":", 1)
    assert host and int(port) > 0
    assert ctx.get_session_name().startswith("session_")
    assert os.path.isdir(os.path.join(ctx.get_temp_dir(), ctx.get_session_name()))
    assert ctx.get_node_labels() == {"ray.io/node-id": ctx.get_node_id()}
    assert ctx.get_accelerator_ids() == {"GPU": []}
    actor = NamedProbe.options(name="probe-name").remote()
    name, task_name, env = zray.get(actor.context.remote(), timeout=30)
    assert (name, task_name, env) == ("probe-name", "NamedProbe.context", {})
    assert zray.get(NamedProbe.remote().context.remote(), timeout=30)[0] == ""   # unnamed actor: "" as in Ray
    assert zray.get(task_context.remote(), timeout=30) == ("task_context", None, False)
    assert zray.get(task_context.options(name="renamed").remote(), timeout=30)[0] == "renamed"
    with pytest.raises(ValueError, match="'object_store_memory' is not implemented for tasks"):
        task_context.options(object_store_memory=1 << 20)
    assert ctx.runtime_env == {} and ctx.get_runtime_env_string() == "{}"


@zray.remote
def slow_square(x):
    time.sleep(0.05 * (3 - x % 3))
    return x * x


def test_as_completed_and_map_unordered(cluster):
    refs = [slow_square.remote(i) for i in range(6)]
    assert sorted(zray.util.as_completed(refs, chunk_size=2)) == [i * i for i in range(6)]
    got = list(zray.util.as_completed(refs, yield_obj_refs=True))
    assert all(isinstance(r, zray.ObjectRef) for r in got) and len(got) == 6
    assert sorted(zray.util.map_unordered(slow_square, range(8), backpressure_size=3,
                                          chunk_size=1)) == [i * i for i in range(8)]
    with pytest.raises(ValueError, match="chunk_size"):
        list(zray.util.as_completed(refs, chunk_size=0))
    with pytest.raises(ValueError, match="backpressure_size"):
        list(zray.util.map_unordered(slow_square, [1], backpressure_size=0))


class Unpicklable:
    def __init__(self, value):
        self.value = value

    def __reduce__(self):
        raise TypeError("not picklable as is")


@zray.remote
def value_of(obj):
    return obj.value


def test_custom_serializers(cluster):
    with pytest.raises(TypeError):
        zray.put(Unpicklable(1))
    zray.util.register_serializer(Unpicklable, serializer=lambda o: o.value,
                                  deserializer=lambda v: Unpicklable(v + 100))
    try:
        assert zray.get(value_of.remote(Unpicklable(1)), timeout=30) == 101
        assert zray.get(zray.put(Unpicklable(2))).value == 102
    finally:
        zray.util.deregister_serializer(Unpicklable)
    with pytest.raises(TypeError):
        zray.put(Unpicklable(3))


def test_ray_id_classes_and_cloudpickle_are_exported():
    assert zray.NodeID.from_hex("ab" * 16).hex() == "ab" * 16
    assert zray.PlacementGroupID.nil().is_nil()
    assert zray.cloudpickle.loads(zray.cloudpickle.dumps(lambda: 3))() == 3


@zray.remote
def context_dict():
    return zray.get_runtime_context().get()


@zray.remote
class ContextDict:
    def get(self):
        return zray.get_runtime_context().get()


def test_runtime_context_dict_and_deprecated_properties(cluster):
    from zray.util.annotations import RayDeprecationWarning
    ctx = zray.get_runtime_context()
    with pytest.warns(RayDeprecationWarning, match="get_xxx_id"):
        driver = ctx.get()
    assert set(driver) == {"job_id", "node_id", "namespace"}
    assert set(zray.get(context_dict.remote())) == {"job_id", "node_id", "namespace", "task_id"}
    in_actor = zray.get(ContextDict.remote().get.remote())
    assert set(in_actor) == {"job_id", "node_id", "namespace", "task_id", "actor_id"}
    for name in ("job_id", "node_id"):
        with pytest.warns(RayDeprecationWarning, match=f"get_{name}"):
            assert getattr(ctx, name).hex() == getattr(ctx, f"get_{name}")()


@zray.remote
class Greeter:
    def hello(self):
        return "hello from the first driver's actor"


def _run_driver(program: str, env=None) -> str:
    """Run ``program`` as another driver process; its stdout (it must succeed)."""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=90, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_second_driver_joins_a_cluster_started_by_init(cluster):
    """As in Ray: init(address=<the first driver's context address>) from
    another process connects to the cluster zray.init() started."""
    address = zray.get_runtime_context().gcs_address
    greeter = Greeter.options(name="greeter", namespace="shared").remote()
    assert zray.get(greeter.hello.remote(), timeout=30)
    program = (
        "import zray\n"
        f"zray.init(address={address!r})\n"
        "actor = zray.get_actor('greeter', namespace='shared')\n"
        "print(zray.get(actor.hello.remote(), timeout=30))\n"
        "print(zray.get(zray.remote(lambda: 'a task').remote(), timeout=30))\n"
        "zray.shutdown()\n")
    out = _run_driver(program)
    assert out.split("\n")[:2] == ["hello from the first driver's actor", "a task"]
    # The first driver's actor lives on: the second driver only borrowed it.
    assert zray.get(greeter.hello.remote(), timeout=30)


@zray.remote
def function_name_probe():
    return zray.get_runtime_context().get_task_function_name()


@zray.remote
class FunctionNameProbe:
    def probe(self):
        return zray.get_runtime_context().get_task_function_name()


def test_task_function_names_are_module_qualified_as_in_ray(cluster):
    assert zray.get_runtime_context().get_task_function_name() is None      # the driver
    assert zray.get(function_name_probe.remote(), timeout=30) == f"{__name__}.function_name_probe"
    actor = FunctionNameProbe.remote()
    assert zray.get(actor.probe.remote(), timeout=30) == f"{__name__}.FunctionNameProbe.probe"

    @zray.remote
    class AsyncProbe:
        async def probe(self):
            return zray.get_runtime_context().get_task_function_name()

    # Ray names an async actor's methods by their __qualname__.
    assert zray.get(AsyncProbe.remote().probe.remote(), timeout=30) == (
        f"{__name__}.test_task_function_names_are_module_qualified_as_in_ray.<locals>.AsyncProbe.probe")


def test_a_cancelled_tasks_error_says_it_was_cancelled(cluster, tmp_path):
    started = str(tmp_path / "started")

    @zray.remote
    def sleeper():
        open(started, "w").close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:   # Python code: the interrupt lands between bytecodes
            time.sleep(0.01)

    ref = sleeper.remote()
    wait_for(lambda: os.path.exists(started), 15, "the task to start")
    zray.cancel(ref)
    with pytest.raises(zray.exceptions.TaskCancelledError) as info:
        zray.get(ref, timeout=30)
    assert "KeyboardInterrupt" in str(info.value) and "was cancelled" in str(info.value)


def test_ray_environment_variables_for_address_and_temp_dir(cluster):
    """RAY_ADDRESS makes init() join that cluster; RAY_TMPDIR holds the sessions."""
    program = (
        "import os, zray\n"
        "zray.init()\n"
        "print(zray.get_runtime_context().gcs_address)\n"
        "print(zray.get(zray.remote(lambda: 'joined').remote(), timeout=30))\n"
        "zray.shutdown()\n")
    env = dict(os.environ, RAY_ADDRESS=zray.get_runtime_context().gcs_address)
    assert _run_driver(program, env).split("\n")[:2] == [env["RAY_ADDRESS"], "joined"]

    program = ("import zray\n"
               "print(zray.init(num_cpus=1)['session_dir'])\n"
               "zray.shutdown()\n")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "ZRAY_ADDRESS")}
    import shutil
    import tempfile
    short = tempfile.mkdtemp(prefix="zt", dir="/tmp")   # ipc socket paths must stay < 108 bytes
    try:
        env["RAY_TMPDIR"] = short
        assert _run_driver(program, env).strip().startswith(os.path.join(short, "zray-sessions"))
    finally:
        shutil.rmtree(short, ignore_errors=True)


def test_ray_runtime_context_module_and_task_job_ids(cluster):
    @zray.remote
    def job_ids():
        task_id = zray.runtime_context.get_runtime_context().get_task_id()
        return zray.TaskID(bytes.fromhex(task_id)).job_id(), zray.put(1).job_id()

    task_job, object_job = zray.get(job_ids.remote(), timeout=30)
    assert task_job == object_job
    assert task_job.hex() == zray.get_runtime_context().get_job_id()
