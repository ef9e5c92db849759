"""Errors and bad input against a real cluster, plus the introspection API
(runtime context, resources, nodes) and init/shutdown rules."""
from __future__ import annotations

import os
import threading

import pytest

import zray
from zray import exceptions
from conftest import wait_for

CLUSTER = dict(num_cpus=2, resources={"widget": 3})

pytestmark = pytest.mark.timeout(60)


class MyError(Exception):
    pass


class TwoArgError(Exception):
    def __init__(self, code, detail):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class Unpicklable:
    def __reduce__(self):
        raise TypeError("Unpicklable refuses to be pickled")


@zray.remote
def raise_value_error():
    raise ValueError("the message 123")


@zray.remote
def raise_my_error():
    raise MyError("mine")


def helper_that_fails():
    return 1 / 0


@zray.remote
def fails_deep():
    return helper_that_fails()


# ------------------------------------------------------------- task errors ---
def test_task_error_subclasses_user_exception(cluster):
    ref = raise_value_error.remote()
    with pytest.raises(ValueError) as info:
        zray.get(ref)
    err = info.value
    assert isinstance(err, zray.exceptions.RayTaskError)
    assert isinstance(err, zray.exceptions.RayError)
    assert isinstance(err, ValueError)
    assert isinstance(err.cause, ValueError) and str(err.cause) == "the message 123"
    try:
        zray.get(ref)
    except ValueError as caught:
        assert "the message 123" in str(caught)
    else:
        pytest.fail("no error raised")


def test_task_error_message_has_traceback_and_function_name(cluster):
    with pytest.raises(ZeroDivisionError) as info:
        zray.get(fails_deep.remote())
    text = str(info.value)
    # Ray's format: where it ran, then the user's frames only.
    assert text.startswith("zray::fails_deep() (pid=")
    assert "helper_that_fails" in text and "Traceback" not in text
    assert "ZeroDivisionError" in text and "division by zero" in text
    assert "zray/core" not in text


def test_a_task_whose_argument_failed_raises_its_own_error(cluster):
    @zray.remote
    def passes(x):
        return x

    with pytest.raises(ValueError) as info:
        zray.get(passes.remote(raise_value_error.remote()), timeout=30)
    assert isinstance(info.value, exceptions.RayTaskError)
    text = str(info.value)
    assert text.startswith("zray::") and "passes" in text.splitlines()[0]
    assert "At least one of the input arguments" in text and "the message 123" in text


def test_user_exception_types(cluster):
    with pytest.raises(MyError, match="mine"):
        zray.get(raise_my_error.remote())

    @zray.remote
    def two_args():
        raise TwoArgError(7, "seven")

    with pytest.raises(TwoArgError) as info:
        zray.get(two_args.remote())
    assert isinstance(info.value, exceptions.RayTaskError)
    assert info.value.code == 7 and info.value.detail == "seven"


def test_local_exception_class_with_custom_init(cluster):
    class LocalError(KeyError):
        def __init__(self, a, b, c):
            super().__init__(a + b + c)
            self.parts = (a, b, c)

    @zray.remote
    def raise_local():
        raise LocalError(1, 2, 3)

    with pytest.raises(KeyError) as info:
        zray.get(raise_local.remote())
    assert isinstance(info.value, exceptions.RayTaskError)
    assert type(info.value.cause).__name__ == "LocalError"
    assert info.value.cause.parts == (1, 2, 3) and info.value.parts == (1, 2, 3)


def test_unpicklable_exception_still_reported(cluster):
    class Local(Exception):
        def __init__(self):
            super().__init__("local error")
            self.lock = threading.Lock()

    @zray.remote
    def raise_local():
        raise Local()

    with pytest.raises(exceptions.RayTaskError, match="local error") as info:
        zray.get(raise_local.remote())
    # Ray's stand-in for the cause: a RayError saying why, with the traceback.
    assert type(info.value.cause) is exceptions.RayError
    assert "Local isn't serializable" in str(info.value.cause)
    assert "local error" in str(info.value.cause)


class TwoPartError(Exception):
    def __init__(self, one, two):
        super().__init__(one, two)
        self.one, self.two = one, two


def test_dual_exception_instances_pickle_as_both_types():
    import pickle
    err = exceptions.RayTaskError("f", "a traceback", TwoPartError("1", "2"))
    dual = err.make_dual_exception_instance()
    back = pickle.loads(pickle.dumps(dual))
    assert isinstance(back, TwoPartError) and isinstance(back, exceptions.RayTaskError)
    assert (back.one, back.two) == ("1", "2") and "a traceback" in str(back)
    assert err.as_instanceof_cause().one == "1"


def test_error_through_nested_tasks(cluster):
    @zray.remote
    def outer():
        return zray.get(raise_value_error.remote())

    with pytest.raises(ValueError) as info:
        zray.get(outer.remote())
    assert "the message 123" in str(info.value)
    assert "outer" in str(info.value)


def test_actor_method_error_names_method(cluster):
    @zray.remote
    class Thrower:
        def throw(self):
            raise MyError("from actor")

    t = Thrower.remote()
    with pytest.raises(MyError) as info:
        zray.get(t.throw.remote())
    assert isinstance(info.value, exceptions.RayTaskError)
    assert "Thrower.throw" in str(info.value) and "from actor" in str(info.value)


def test_system_exit_in_task_is_an_error(cluster):
    @zray.remote
    def calls_sys_exit():
        raise KeyboardInterrupt()

    with pytest.raises(exceptions.RayError):
        zray.get(calls_sys_exit.remote(), timeout=30)


@zray.remote
def sleep_long():
    import time
    time.sleep(300)


@zray.remote
class Doomed:
    def die(self):
        os._exit(1)


def test_get_of_a_list_raises_the_first_error_without_waiting_for_the_rest(cluster):
    """As in Ray: one failed object fails the whole get at once."""
    hanging = sleep_long.remote()
    with pytest.raises(ValueError):       # GetTimeoutError if get waited for `hanging`
        zray.get([hanging, raise_value_error.remote()], timeout=20)
    actor = Doomed.remote()
    with pytest.raises(exceptions.RayActorError):
        zray.get([hanging, actor.die.remote()], timeout=20)
    zray.cancel(hanging, force=True)


def test_error_is_stored_for_every_return(cluster):
    @zray.remote(num_returns=2)
    def fail_two():
        raise MyError("both")

    a, b = fail_two.remote()
    for ref in (a, b):
        with pytest.raises(MyError):
            zray.get(ref)


# ----------------------------------------------------------- serialization ---
def test_unpicklable_argument_names_it(cluster):
    @zray.remote
    def takes(*args, **kwargs):
        return len(args)

    with pytest.raises(TypeError) as info:
        takes.remote(1, threading.Lock())
    assert "argument 1" in str(info.value) and "lock" in str(info.value).lower()
    with pytest.raises(TypeError) as info:
        takes.remote(1, guard=threading.Lock())
    assert "guard" in str(info.value)
    with pytest.raises(TypeError):
        takes.remote(Unpicklable())
    # The failed submissions left nothing behind: the function still works.
    assert zray.get(takes.remote(1, 2)) == 2


def test_unpicklable_actor_argument(cluster):
    @zray.remote
    class Holder:
        def __init__(self, x=None):
            self.x = x

        def put(self, x):
            self.x = x

    with pytest.raises(TypeError, match="lock"):
        Holder.remote(threading.Lock())
    h = Holder.remote()
    with pytest.raises(TypeError, match="lock"):
        h.put.remote(threading.Lock())


def test_put_unpicklable(cluster):
    with pytest.raises(TypeError):
        zray.put(threading.Lock())
    assert zray.get(zray.put("fine")) == "fine"


def test_unpicklable_return_value(cluster):
    @zray.remote
    def returns_lock():
        return threading.Lock()

    with pytest.raises(exceptions.RayTaskError) as info:
        zray.get(returns_lock.remote())
    assert "lock" in str(info.value).lower()


def test_function_capturing_unpicklable_global(cluster):
    lock = threading.Lock()

    def uses_lock():
        with lock:
            return 1

    f = zray.remote(uses_lock)
    with pytest.raises(TypeError):
        f.remote()


# ------------------------------------------------------------ bad API usage ---
def test_unknown_options_are_value_errors(cluster):
    with pytest.raises(ValueError, match="num_cpu"):
        zray.remote(num_cpu=1)(lambda: 1)
    with pytest.raises(ValueError, match="bogus_option"):
        raise_value_error.options(bogus_option=1)
    with pytest.raises(ValueError, match="max_restarts"):
        raise_value_error.options(max_restarts=1)

    class Plain:
        pass

    with pytest.raises(ValueError, match="max_retries"):
        zray.remote(max_retries=1)(Plain)
    Actor = zray.remote(Plain)
    with pytest.raises(ValueError, match="not_an_option"):
        Actor.options(not_an_option=True)


def test_bad_option_values(cluster):
    with pytest.raises(ValueError):
        raise_value_error.options(num_cpus=-1)
    with pytest.raises(ValueError):
        raise_value_error.options(num_returns=-1)
    with pytest.raises((TypeError, ValueError)):
        raise_value_error.options(resources="CPU")
    with pytest.raises(ValueError):
        raise_value_error.options(resources={"CPU": 1})


def test_remote_decorator_misuse(cluster):
    with pytest.raises(TypeError):
        zray.remote(1, 2)
    with pytest.raises(TypeError):
        zray.remote(5)


def test_calling_remote_things_directly(cluster):
    with pytest.raises(TypeError, match=r"\.remote\(\)"):
        raise_value_error()

    @zray.remote
    class A:
        def m(self):
            return 1

    with pytest.raises(TypeError, match=r"\.remote\(\)"):
        A()
    a = A.remote()
    with pytest.raises(TypeError, match=r"\.remote\(\)"):
        a.m()
    assert zray.get(a.m.remote()) == 1


def test_remote_on_non_remote_objects(cluster):
    def plain():
        return 1

    with pytest.raises(AttributeError):
        plain.remote()

    @zray.remote
    class A:
        def m(self):
            return 1

    a = A.remote()
    with pytest.raises(AttributeError):
        a.no_such_method.remote()


def test_get_on_non_refs(cluster):
    # Ray's types: ValueError for a value that is not a ref or a list, TypeError for a bad element.
    with pytest.raises(ValueError, match="got int: 1"):
        zray.get(1)
    with pytest.raises(ValueError, match="got str"):
        zray.get("abc")
    with pytest.raises(TypeError, match="list containing int: 2"):
        zray.get([zray.put(1), 2])
    with pytest.raises(ValueError, match="got dict"):
        zray.get({"a": zray.put(1)})


def test_negative_or_bad_timeouts(cluster):
    ref = zray.put(1)
    with pytest.raises(ValueError):
        zray.get(ref, timeout=-1)
    with pytest.raises(ValueError):
        zray.wait([ref], timeout=-0.5)
    with pytest.raises(TypeError):
        zray.get(ref, timeout="1")


def test_kill_and_cancel_bad_arguments(cluster):
    with pytest.raises(ValueError):
        zray.kill("not an actor")
    with pytest.raises(TypeError):
        zray.cancel("not a ref")


def test_get_actor_bad_name(cluster):
    with pytest.raises(ValueError):
        zray.get_actor("")
    with pytest.raises(ValueError):
        zray.get_actor("definitely-not-there")


# ---------------------------------------------------------- runtime context ---
@zray.remote
def task_context():
    ctx = zray.get_runtime_context()
    return {"job": ctx.get_job_id(), "node": ctx.get_node_id(), "task": ctx.get_task_id(),
            "actor": ctx.get_actor_id(), "worker": ctx.get_worker_id(), "pid": os.getpid()}


@zray.remote
class ContextActor:
    def context(self):
        return zray.get(task_context.remote()), {
            "job": zray.get_runtime_context().get_job_id(),
            "actor": zray.get_runtime_context().get_actor_id(),
            "task": zray.get_runtime_context().get_task_id(),
            "node": zray.get_runtime_context().get_node_id()}


def test_runtime_context_ids(cluster):
    ctx = zray.get_runtime_context()
    job, node = ctx.get_job_id(), ctx.get_node_id()
    assert isinstance(job, str) and job and isinstance(node, str) and node
    assert ctx.get_actor_id() is None
    assert ctx.get_task_id() is None
    assert ctx.namespace

    t1, t2 = zray.get([task_context.remote(), task_context.remote()])
    for t in (t1, t2):
        assert t["job"] == job and t["node"] == node and t["actor"] is None
        assert t["task"] and t["worker"] != ctx.get_worker_id()
    assert t1["task"] != t2["task"]

    a = ContextActor.remote()
    nested, mine = zray.get(a.context.remote())
    assert mine["actor"] == a._actor_id.hex()
    assert mine["job"] == job and mine["node"] == node and mine["task"]
    assert nested["actor"] is None and nested["job"] == job
    assert nested["task"] != mine["task"]


def test_runtime_context_ids_relate_to_refs(cluster):
    ref = task_context.remote()
    info = zray.get(ref)
    assert ref.task_id().hex() == info["task"] or ref.hex().startswith(info["task"])


# ---------------------------------------------------- resources and nodes ---
def test_cluster_and_available_resources(cluster):
    total = zray.cluster_resources()
    assert total["CPU"] == 2 and total["widget"] == 3
    assert total.get("memory", 0) > 0 and total.get("object_store_memory", 0) > 0
    wait_for(lambda: zray.available_resources().get("CPU") == 2, 10, "all CPUs free")

    @zray.remote(resources={"widget": 2}, num_cpus=0)
    def hold(path):
        wait_for(lambda: os.path.exists(path), 30, "release file")
        return True

    import tempfile
    path = os.path.join(tempfile.mkdtemp(), "release")
    ref = hold.remote(path)
    wait_for(lambda: zray.available_resources().get("widget") == 1, 10, "2 widgets in use")
    open(path, "w").close()
    assert zray.get(ref, timeout=30)
    wait_for(lambda: zray.available_resources().get("widget") == 3, 10, "widgets back")


def test_nodes(cluster):
    nodes = zray.nodes()
    assert len(nodes) == 1
    node = nodes[0]
    assert node["Alive"] is True
    assert node["NodeID"] == zray.get_runtime_context().get_node_id()
    assert node["Resources"]["CPU"] == 2 and node["Resources"]["widget"] == 3
    assert node["NodeManagerAddress"]
    ray_keys = {"NodeID", "Alive", "NodeManagerAddress", "NodeManagerHostname", "NodeManagerPort",
                "ObjectManagerPort", "ObjectStoreSocketName", "RayletSocketName", "MetricsExportPort",
                "MetricsAgentPort", "DashboardAgentListenPort", "NodeName", "RuntimeEnvAgentPort",
                "DeathReason", "DeathReasonMessage", "alive", "Resources", "Labels"}   # Ray 2.60's
    assert ray_keys <= set(node)
    assert node["NodeManagerPort"] > 0 and node["Labels"]["ray.io/node-id"] == node["NodeID"]


# -------------------------------------------------------- init / shutdown ---
def test_init_twice(no_cluster):
    assert not zray.is_initialized()
    ctx = zray.init(num_cpus=1)
    assert zray.is_initialized()
    assert ctx["node_id"] == zray.get_runtime_context().get_node_id()
    with pytest.raises(RuntimeError, match="ignore_reinit_error"):
        zray.init(num_cpus=1)
    again = zray.init(num_cpus=1, ignore_reinit_error=True)
    assert again["node_id"] == ctx["node_id"]
    assert zray.is_initialized()
    zray.shutdown()
    assert not zray.is_initialized()
    zray.shutdown()  # a second shutdown is harmless
    assert not zray.is_initialized()


def test_init_after_shutdown_and_context_manager(no_cluster):
    with zray.init(num_cpus=1, namespace="ctx-ns") as ctx:
        assert zray.get_runtime_context().namespace == "ctx-ns"
        assert zray.get(task_context.remote())["job"]
        first_node = ctx["node_id"]
    assert not zray.is_initialized()
    zray.init(num_cpus=1)
    assert zray.get_runtime_context().get_node_id() != first_node
    assert zray.get(zray.put(5)) == 5


def test_init_rejects_unknown_keyword(no_cluster):
    with pytest.raises(RuntimeError, match="Unknown keyword argument.s.: not_a_real_option"):
        zray.init(num_cpus=1, not_a_real_option=True)   # Ray's error, naming the culprit
    assert not zray.is_initialized()


def test_api_auto_initializes(no_cluster):
    assert zray.get(zray.put("auto"), timeout=30) == "auto"
    assert zray.is_initialized()


def test_runtime_context_starts_zray_as_other_calls_do(no_cluster):
    try:
        assert zray.get_runtime_context().get_job_id() and zray.is_initialized()
    finally:
        zray.shutdown()


def test_wrong_arguments_raise_type_error_at_remote(no_cluster):
    @zray.remote
    def two(a, b):
        return a + b

    @zray.remote
    class Point:
        def __init__(self, x, y=0):
            self.x = x

    with pytest.raises(TypeError, match="two.remote"):
        two.remote(1)
    with pytest.raises(TypeError, match="Point.remote"):
        Point.remote(1, 2, 3)
