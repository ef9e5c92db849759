"""Validation of ``@remote`` / ``.options()`` keywords (Ray's names) and the
resource shape they imply."""
from __future__ import annotations

TASK_OPTIONS = {
    "num_cpus", "num_gpus", "resources", "memory", "object_store_memory", "accelerator_type",
    "num_returns", "max_retries", "retry_exceptions", "name", "scheduling_strategy",
    "placement_group", "placement_group_bundle_index", "placement_group_capture_child_tasks",
    "runtime_env", "max_calls", "label_selector", "_metadata", "enable_task_events",
    "_generator_backpressure_num_objects",
}
ACTOR_OPTIONS = {
    "num_cpus", "num_gpus", "resources", "memory", "object_store_memory", "accelerator_type",
    "name", "namespace", "lifetime", "max_concurrency", "max_restarts", "max_task_retries",
    "max_pending_calls", "get_if_exists", "scheduling_strategy", "placement_group",
    "placement_group_bundle_index", "placement_group_capture_child_tasks", "runtime_env",
    "concurrency_groups", "label_selector", "_metadata", "enable_task_events",
}
METHOD_OPTIONS = {"num_returns", "name", "max_task_retries", "retry_exceptions",
                  "concurrency_group", "enable_task_events", "_metadata",
                  "_generator_backpressure_num_objects"}


ACCELERATOR_SLIVER = 0.001


RESOURCE_PRECISION = 1e-4      # Ray's smallest fractional amount of a resource
_NUMBER = (int, float)
_INT = int


def _quantity(name: str):
    def check(value):
        if value < 0:
            return f"The quantity of resource {name} cannot be negative"
        if isinstance(value, float) and value != 0.0 and value < RESOURCE_PRECISION:
            return (f"The precision of the fractional quantity of resource {name} cannot go "
                    f"beyond {RESOURCE_PRECISION}")
        return None
    return check


def _counting(name: str, infinite: bool):
    lowest = -1 if infinite else 0

    def check(value):
        if value < lowest:
            return (f"The keyword '{name}' only accepts None, 0, -1 or a positive integer, "
                    f"where -1 represents infinity." if infinite else
                    f"The keyword '{name}' only accepts None, 0 or a positive integer.")
        return None
    return check


def _check_resources(resources):
    if "CPU" in resources or "GPU" in resources:
        return ("Use the 'num_cpus' and 'num_gpus' keyword instead of 'CPU' and 'GPU' in "
                "'resources' keyword")
    for name, amount in resources.items():
        if not isinstance(amount, _NUMBER) or isinstance(amount, bool):
            return f"Resource {name!r} needs a non-negative number, got {amount!r}."
        problem = _quantity(name)(amount)
        if problem:
            return problem
    return None


def _check_num_returns(value):
    if value in ("streaming", "dynamic") or (isinstance(value, int) and value >= 0):
        return None
    return (f"The keyword 'num_returns' only accepts None, a non-negative integer, "
            f"'streaming' (for generators), or 'dynamic', got {value!r}.")


def _check_retry_exceptions(value):
    if isinstance(value, bool) or all(isinstance(e, type) and issubclass(e, BaseException)
                                      for e in value):
        return None
    return "retry_exceptions must be either a boolean or a list of exceptions"


def _check_backpressure(value):
    if value == -1 or value > 0:
        return None
    return ("_generator_backpressure_num_objects must be a positive integer (how many "
            f"yielded objects may wait unconsumed) or -1 (no limit), got {value!r}.")


def _check_max_pending(value):
    if value == -1 or value >= 1:
        return None
    return f"max_pending_calls must be a positive integer or -1 (no limit), got {value!r}."


def _check_max_concurrency(value):
    return None if value >= 1 else f"max_concurrency must be a positive integer, got {value!r}."


def _check_lifetime(value):
    if value in ("detached", "non_detached"):
        return None
    return (f"actor `lifetime` argument must be one of 'detached', 'non_detached' and 'None', "
            f"got {value!r}.")


def _refuse_label_selector(value):
    if value:
        return ("label_selector is not supported by zray: its nodes carry no labels "
                "(use resources= or a NodeAffinitySchedulingStrategy).")
    return None


# option -> (accepted types besides None, value check returning an error or None).
# Ray's constraints (ray_option_utils): a wrong type is a TypeError, a bad value
# a ValueError.  Placement options are checked where they are resolved (scheduling).
_CHECKS = {
    "num_cpus": (_NUMBER, _quantity("num_cpus")),
    "num_gpus": (_NUMBER, _quantity("num_gpus")),
    "memory": (_NUMBER, _quantity("memory")),
    "resources": (dict, _check_resources),
    "accelerator_type": (str, None),
    "name": (str, None),
    "namespace": (str, None),
    "runtime_env": (dict, None),
    "label_selector": (dict, _refuse_label_selector),
    "_metadata": (dict, None),
    "enable_task_events": (bool, None),
    "placement_group_bundle_index": (_INT, None),
    "placement_group_capture_child_tasks": (bool, None),
    "num_returns": ((int, str), _check_num_returns),
    "max_calls": (_INT, _counting("max_calls", False)),
    "max_retries": (_INT, _counting("max_retries", True)),
    "retry_exceptions": ((bool, list, tuple), _check_retry_exceptions),
    "_generator_backpressure_num_objects": (_INT, _check_backpressure),
    "object_store_memory": (_INT, _counting("object_store_memory", False)),
    "lifetime": (str, _check_lifetime),
    "max_concurrency": (_INT, _check_max_concurrency),
    "max_restarts": (_INT, _counting("max_restarts", True)),
    "max_task_retries": (_INT, _counting("max_task_retries", True)),
    "max_pending_calls": (_INT, _check_max_pending),
    "get_if_exists": (bool, None),
    "concurrency_groups": ((dict, list), None),
    "concurrency_group": (str, None),
}


def validate(options: dict, allowed: set, what: str) -> dict:
    """``options`` if every keyword is one of ``allowed`` with a value Ray would
    take: ValueError for an unknown keyword or a bad value, TypeError for a
    value of the wrong type."""
    for key in options:
        if key not in allowed:
            raise ValueError(f"Invalid option keyword {key} for {what}. "
                             f"Valid ones are {sorted(allowed)}.")
    if allowed is ACTOR_OPTIONS and options.get("get_if_exists") and not options.get("name"):
        raise ValueError("The actor name must be specified to use `get_if_exists`.")   # Ray's
    if options.get("object_store_memory") is not None:
        if allowed is TASK_OPTIONS:
            raise ValueError("Setting 'object_store_memory' is not implemented for tasks")   # Ray's
        if allowed is ACTOR_OPTIONS:
            import warnings
            warnings.warn("Setting 'object_store_memory' for actors is deprecated since it "
                          "doesn't actually reserve the required object store memory. Use "
                          "object spilling that's enabled by default instead.",
                          DeprecationWarning, stacklevel=4)
    for key, value in options.items():
        check = _CHECKS.get(key)
        if check is None or value is None:
            continue
        types, value_check = check
        if not isinstance(value, types):
            raise TypeError(f"The type of keyword '{key}' must be {_type_names(types)}, "
                            f"but received type {type(value).__name__}: {value!r}")
        if value_check is not None:
            problem = value_check(value)
            if problem:
                raise ValueError(problem)
    return options


def _type_names(types) -> str:
    names = [t.__name__ for t in (types if isinstance(types, tuple) else (types,))]
    return " or ".join(names + ["None"])


def resource_shape(options: dict, default_cpus: float) -> dict:
    shape = {}
    cpus = options.get("num_cpus")
    shape["CPU"] = default_cpus if cpus is None else cpus
    gpus = options.get("num_gpus")
    if gpus:
        shape["GPU"] = gpus
    memory = options.get("memory")
    if memory:
        shape["memory"] = memory
    for name, amount in (options.get("resources") or {}).items():
        shape[name] = amount
    accelerator = options.get("accelerator_type")
    if accelerator:   # Ray's: a sliver of the resource nodes with that accelerator have
        shape[f"accelerator_type:{accelerator}"] = ACCELERATOR_SLIVER
    return shape


def actor_resource_shape(options: dict) -> dict:
    """{} for a default actor (the raylet then needs 1 CPU to place it, 0 to run)."""
    if options.get("num_cpus") is None and not options.get("num_gpus") and not options.get("resources") \
            and not options.get("memory") and not options.get("accelerator_type"):
        return {}
    return resource_shape(options, 0)


def concurrency_groups(groups, meta: dict, class_name: str) -> dict:
    """An actor's ``concurrency_groups`` ({name: max concurrency}), checked; the
    groups its methods declare with zray.method must be among them."""
    groups = dict(groups or {})
    for name, limit in groups.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"concurrency group names must be non-empty strings, got {name!r}.")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"concurrency group {name!r} needs a positive integer max "
                             f"concurrency, got {limit!r}.")
    for method_name, group in meta.get("method_groups", {}).items():
        check_concurrency_group(group, groups, class_name, method_name)
    return groups


def check_concurrency_group(group, groups: dict, class_name: str, method_name: str) -> str:
    if group not in groups:
        raise ValueError(f"{class_name}.{method_name} asks for concurrency group {group!r}, "
                         f"which the actor does not define (its groups: {sorted(groups)}).")
    return group


def generator_backpressure(options: dict):
    """The streaming generator's limit on unconsumed items, or None."""
    limit = options.get("_generator_backpressure_num_objects")
    return limit if limit and limit > 0 else None
