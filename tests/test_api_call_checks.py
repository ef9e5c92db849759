"""Ray's checks at the call site and its lower-level entry points, as Ray's own
test files (test_basic.py, test_failure.py, test_actor.py) expect them:
option types and values, actor-call arguments, `_remote`, method lookup on the
class, the ObjectID alias, and what `@remote` refuses."""
from __future__ import annotations

import pytest

import zray


@zray.remote
def add(a, b=0):
    return a + b


@zray.remote
def pair():
    return 1, 2


@zray.remote
class Shadowed:
    def __init__(self, start=0):
        self.value = start
        self.collected = False      # an instance attribute named like a method

    def collected(self):            # noqa: F811 - the point of the test
        return ("method", self.value)

    def add(self, a, b, *rest, scale=1):
        return (a + b + sum(rest)) * scale

    @staticmethod
    def static(x):
        return ("static", x)

    @classmethod
    def klass(cls, x):
        return (cls.__name__, x)


def test_option_types_and_values_are_checked_like_ray(cluster):
    with pytest.raises(TypeError, match="max_retries"):
        add.options(max_retries=0.5)
    with pytest.raises(ValueError, match="max_calls"):
        zray.remote(max_calls=-1)(lambda: 1)
    with pytest.raises(ValueError, match="max_retries"):
        add.options(max_retries=-5)
    with pytest.raises(ValueError, match="precision"):
        add.options(num_gpus=1e-7)
    with pytest.raises(TypeError, match="num_cpus"):
        add.options(num_cpus="1")
    with pytest.raises(ValueError, match="retry_exceptions"):
        add.options(retry_exceptions=[ValueError, "not an exception"])
    with pytest.raises(ValueError, match="max_restarts"):
        Shadowed.options(max_restarts=-5)
    with pytest.raises(TypeError, match="max_task_retries"):
        Shadowed.options(max_task_retries=0.5)
    with pytest.raises(TypeError, match="_metadata"):
        Shadowed.options(_metadata=3.14)
    with pytest.raises(ValueError, match="lifetime"):
        Shadowed.options(lifetime="forever")
    # Accepted: -1 is "infinite" for retries and restarts, None means the default.
    assert zray.get(add.options(max_retries=-1, num_cpus=None).remote(1), timeout=30) == 1


def test_remote_refuses_empty_parentheses_and_async_functions():
    with pytest.raises(TypeError, match="decorator"):
        zray.remote()

    async def coroutine():
        return 1

    with pytest.raises(ValueError, match="async def"):
        zray.remote(coroutine)


def test_actor_call_arguments_are_checked_at_remote(cluster):
    actor = Shadowed.remote()
    with pytest.raises(TypeError, match="missing a required argument: 'b'"):
        actor.add.remote(1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        actor.add.remote(1, 2, nope=3)
    with pytest.raises(TypeError, match="too many positional"):
        actor.static.remote(1, 2)
    assert zray.get(actor.add.remote(1, 2, 3, scale=2), timeout=30) == 12
    assert zray.get(actor.static.remote(5), timeout=30) == ("static", 5)
    assert zray.get(actor.klass.remote(6), timeout=30) == ("Shadowed", 6)


def test_methods_are_found_on_the_class_not_the_instance(cluster):
    actor = Shadowed.remote(7)
    assert zray.get(actor.collected.remote(), timeout=30) == ("method", 7)


def test_lower_level_remote_takes_args_kwargs_and_options(cluster):
    assert zray.get(add._remote(args=[1], kwargs={"b": 2}), timeout=30) == 3
    first, second = pair._remote(num_returns=2)
    assert zray.get([first, second], timeout=30) == [1, 2]
    actor = Shadowed._remote(args=[3], num_cpus=0, name="low-level")
    assert zray.get_actor("low-level") == actor
    assert zray.get(actor.add._remote(args=[1, 2], kwargs={"scale": 3}), timeout=30) == 9


def test_object_id_is_the_old_name_of_object_ref(cluster):
    assert zray.ObjectID is zray.ObjectRef
    assert isinstance(zray.put(1), zray.ObjectID)


def test_actor_class_reads_through_to_the_user_class_and_refuses_subclassing():
    @zray.remote
    class WithConstants:
        LIMIT = 5

        @staticmethod
        def helper():
            return "static"

        def method_one(self):
            return 1

    assert WithConstants.LIMIT == 5 and WithConstants.helper() == "static"
    assert "method_one" in dir(WithConstants) and "remote" in dir(WithConstants)
    with pytest.raises(zray.actor.ActorClassInheritanceException, match="not currently supported"):
        class Derived(WithConstants):
            pass


def test_auto_init_can_be_turned_off_as_in_ray(no_cluster, monkeypatch):
    monkeypatch.setenv("RAY_ENABLE_AUTO_CONNECT", "0")
    with pytest.raises(zray.exceptions.RaySystemError, match="zray.init"):
        zray.put(1)
    assert not zray.is_initialized()


def test_a_definition_capturing_a_huge_object_is_refused(cluster):
    import numpy as np
    huge = np.ones(100 * 1024 * 1024, dtype=np.uint8)

    @zray.remote
    def uses_huge():
        return huge.size

    with pytest.raises(ValueError, match="too large"):
        uses_huge.remote()


def test_object_store_memory_on_an_actor_is_deprecated():
    with pytest.warns(DeprecationWarning, match="object_store_memory"):
        zray.remote(object_store_memory=1)(type("Plain", (), {}))


def test_an_actor_class_capturing_a_huge_object_is_refused_in_rays_words(cluster):
    import numpy as np
    huge = np.ones(100 * 1024 * 1024, dtype=np.uint8)

    @zray.remote
    class UsesHuge:
        def size(self):
            return huge.size

    with pytest.raises(ValueError, match="The actor UsesHuge is too large"):
        UsesHuge.remote()
