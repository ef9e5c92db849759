"""``@zray.remote`` on a function: RemoteFunction with .remote() / .options()."""
from __future__ import annotations

import inspect
import warnings

from . import options as opts
from . import runtime_env, scheduling
from .core import process_state


class RemoteFunction:
    def __init__(self, function, options: dict):
        if inspect.iscoroutinefunction(function):
            raise ValueError("'async def' should not be used for remote tasks. You can wrap the "
                             "async function with `asyncio.run(f())`. See more at: "
                             "https://docs.ray.io/en/latest/ray-core/actors/async_api.html")
        self._function = function
        self._options = opts.validate(dict(options), opts.TASK_OPTIONS, "remote functions")
        self._env = runtime_env.normalize(self._options.get("runtime_env"))
        self._name = getattr(function, "__qualname__", getattr(function, "__name__", "function"))
        self._exported = {}     # core worker id -> function id
        self.__doc__ = function.__doc__
        self.__name__ = getattr(function, "__name__", self._name)
        self.__wrapped__ = function
        self._signature = signature_of(function)
        # Ray streams a generator function's values by default.
        self._default_num_returns = "streaming" if _is_generator(function) else 1

    def __call__(self, *args, **kwargs):
        raise TypeError(f"Remote functions cannot be called directly. Instead of running "
                        f"'{self._name}()', try '{self._name}.remote()'.")

    def remote(self, *args, **kwargs):
        return self._submit(args, kwargs, self._options)

    def _remote(self, args=None, kwargs=None, **options):
        """Ray's lower-level submit: positional and keyword arguments as a list
        and a dict, options as keywords (libraries built on Ray use it)."""
        if options:
            return self.options(**options).remote(*(args or ()), **(kwargs or {}))
        return self._submit(tuple(args or ()), dict(kwargs or {}), self._options)

    def options(self, **options):
        opts.validate(options, opts.TASK_OPTIONS, "remote functions")
        merged = {**self._options, **options}
        merged["_env"] = runtime_env.normalize(merged.get("runtime_env"))
        parent = self

        class FunctionWithOptions:
            def remote(self, *args, **kwargs):
                return parent._submit(args, kwargs, merged)

            def __call__(self, *args, **kwargs):
                parent(*args, **kwargs)

        return FunctionWithOptions()

    def _submit(self, args, kwargs, options):
        from .api import _auto_init
        check_arguments(self._signature, self._name, args, kwargs)
        cw = _auto_init()
        function_id = self._exported.get(id(cw))
        if function_id is None:
            function_id = cw.functions.export(self._function)
            self._exported = {id(cw): function_id}
        num_returns = options.get("num_returns", self._default_num_returns)
        if num_returns == "dynamic":
            _check_dynamic(self._function)
        shape = opts.resource_shape(options, 1)
        placement = scheduling.resolve(cw, options, shape, self._name)
        key = tuple(sorted(placement.demand.items()))
        env = runtime_env.merge(cw.runtime_env, options.get("_env", self._env))
        if env:
            env = runtime_env.materialize(env, cw.session_dir)
        task_options = _task_options(options, shape, key == _DEFAULT_KEY, placement, num_returns)
        if env:   # tasks of another environment need other workers: part of the key
            key += ((runtime_env.ENV_KEY, env),)
        # A task's name (options name=) is what errors and get_task_name() show, as in Ray.
        refs = cw.submit_task(function_id, options.get("name") or self._name, args, kwargs,
                              num_returns, key, options.get("max_retries", 3),
                              options.get("retry_exceptions", False), task_options)
        if num_returns == 1:
            return refs[0]
        if num_returns == 0:
            return None
        return refs

    def __reduce__(self):
        return RemoteFunction, (self._function, self._options)


_DEFAULT_KEY = (("CPU", 1.0),)   # a task's shape without resource options (Ray's)


def _task_options(options: dict, shape: dict, default_shape: bool, placement, num_returns):
    """What the task's spec carries beyond the defaults (None: nothing)."""
    extra = {}
    if options.get("max_calls"):
        extra["max_calls"] = options["max_calls"]
    if not default_shape:   # for get_runtime_context().get_assigned_resources()
        extra["resources"] = shape
    if placement.group is not None:   # for get_current_placement_group() and capture
        extra["placement_group"] = placement.group
    if placement.unschedulable:
        extra["unschedulable"] = placement.unschedulable
    backpressure = opts.generator_backpressure(options)
    if backpressure and num_returns == "streaming":
        extra["generator_backpressure"] = backpressure
    return extra or None


def _check_dynamic(function) -> None:
    if not _is_generator(function):
        raise ValueError("num_returns='dynamic' can only be used with generator functions "
                         "(functions that use 'yield'). The decorated function is not a "
                         "generator function.")
    warnings.warn("num_returns='dynamic' is deprecated and will be removed in a future Ray "
                  "release. Use num_returns='streaming' instead.", DeprecationWarning,
                  stacklevel=4)


def _is_generator(function) -> bool:
    return inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function)


def signature_of(function):
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):   # some builtins have none
        return None


def check_arguments(signature, name: str, args, kwargs) -> None:
    """Ray checks arguments against the signature at .remote(), not at get()."""
    if signature is None:
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise TypeError(f"{exc} (calling '{name}.remote()')") from None


def current_worker():
    return process_state.worker
