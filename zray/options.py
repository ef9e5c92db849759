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


def validate(options: dict, allowed: set, what: str) -> dict:
    for key in options:
        if key not in allowed:
            raise ValueError(f"Invalid option keyword {key} for {what}. "
                             f"Valid ones are {sorted(allowed)}.")
    if allowed is TASK_OPTIONS and options.get("object_store_memory") is not None:
        raise ValueError("Setting 'object_store_memory' is not implemented for tasks")   # Ray's
    for key in ("num_cpus", "num_gpus", "memory"):
        value = options.get(key)
        if value is not None and (not isinstance(value, (int, float)) or value < 0):
            raise ValueError(f"The keyword '{key}' only accepts a non-negative number, got {value!r}.")
    res = options.get("resources")
    if res is not None:
        if not isinstance(res, dict):
            raise TypeError(f"The 'resources' option must be a dict, got {type(res).__name__}.")
        for name, amount in res.items():
            if name in ("CPU", "GPU"):
                raise ValueError(f"Use the 'num_{name.lower()}s' option instead of resources={{'{name}': ...}}.")
            if not isinstance(amount, (int, float)) or amount < 0:
                raise ValueError(f"Resource {name!r} needs a non-negative number, got {amount!r}.")
    num_returns = options.get("num_returns")
    if num_returns is not None and num_returns not in ("streaming", "dynamic") and (
            not isinstance(num_returns, int) or isinstance(num_returns, bool) or num_returns < 0):
        raise ValueError(f"num_returns must be a non-negative integer, 'streaming' or "
                         f"'dynamic', got {num_returns!r}.")
    lifetime = options.get("lifetime")
    if lifetime not in (None, "detached", "non_detached"):
        raise ValueError(f"lifetime must be 'detached' or 'non_detached', got {lifetime!r}.")
    backpressure = options.get("_generator_backpressure_num_objects")
    if backpressure is not None and (not isinstance(backpressure, int) or isinstance(backpressure, bool)
                                     or backpressure == 0 or backpressure < -1):
        raise ValueError("_generator_backpressure_num_objects must be a positive integer (how many "
                         "yielded objects may wait unconsumed) or -1 (no limit), got "
                         f"{backpressure!r}.")
    max_pending = options.get("max_pending_calls")
    if max_pending is not None and (not isinstance(max_pending, int) or isinstance(max_pending, bool)
                                    or (max_pending < 1 and max_pending != -1)):
        raise ValueError(f"max_pending_calls must be a positive integer or -1 (no limit), "
                         f"got {max_pending!r}.")
    if options.get("label_selector"):
        raise ValueError("label_selector is not supported by zray: its nodes carry no labels "
                         "(use resources= or a NodeAffinitySchedulingStrategy).")
    accelerator = options.get("accelerator_type")
    if accelerator is not None and not isinstance(accelerator, str):
        raise ValueError(f"accelerator_type must be a string, got {accelerator!r}.")
    max_concurrency = options.get("max_concurrency")
    if max_concurrency is not None and (not isinstance(max_concurrency, int) or max_concurrency < 1):
        raise ValueError(f"max_concurrency must be a positive integer, got {max_concurrency!r}.")
    return options


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
