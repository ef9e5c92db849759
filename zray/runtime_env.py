"""``runtime_env``: Ray's per-job / per-task / per-actor environment.

zray supports ``env_vars``: workers are started with those variables set
(the raylet keeps workers of different environments apart, as Ray does), so
a library that reads one at import time sees it too.  Ray's other fields
(``working_dir``, ``pip``, ``conda``, ...) raise a clear error instead of
being ignored.  An environment travels as a sorted tuple of (name, value)
pairs; a task's fields override its job's (or parent's) per variable.
"""
from __future__ import annotations

import json
import os

SUPPORTED_FIELDS = ("env_vars",)
# Set in a worker's environment: the env_vars it was started with (JSON pairs).
WORKER_ENV_VAR = "ZRAY_RUNTIME_ENV_VARS"
# Marks the environment inside a task's scheduling key (zray.remote_function).
ENV_KEY = "\0runtime_env"


def normalize(runtime_env, what: str = "runtime_env") -> tuple:
    """The env_vars of a user's ``runtime_env`` as sorted (name, value) pairs."""
    if runtime_env is None:
        return ()
    if not isinstance(runtime_env, dict):
        raise TypeError(f"{what} must be a dict, got {type(runtime_env).__name__}.")
    unsupported = sorted(k for k, v in runtime_env.items() if k not in SUPPORTED_FIELDS and v)
    if unsupported:
        raise ValueError(f"{what} field(s) {unsupported} are not supported by zray; "
                         f"only 'env_vars' is.")
    env_vars = runtime_env.get("env_vars") or {}
    if not isinstance(env_vars, dict):
        raise TypeError(f"{what} 'env_vars' must be a dict, got {type(env_vars).__name__}.")
    for name, value in env_vars.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"{what} 'env_vars' must map str to str, got {name!r}: {value!r}.")
        if not name or "=" in name or "\0" in name or "\0" in value:
            raise ValueError(f"{what} 'env_vars' has an invalid variable name or value: {name!r}.")
    return tuple(sorted(env_vars.items()))


def merge(parent: tuple, child: tuple) -> tuple:
    if not parent:
        return child
    if not child:
        return parent
    merged = dict(parent)
    merged.update(child)
    return tuple(sorted(merged.items()))


def check_pairs(env) -> tuple:
    """``env`` from the network as pairs of str; ValueError if it is not."""
    pairs = tuple(tuple(p) for p in env)
    for pair in pairs:
        if len(pair) != 2 or not all(isinstance(x, str) for x in pair):
            raise ValueError(f"runtime env entries must be (name, value) strings, got {pair!r}")
    return pairs


def encode_for_worker(env: tuple) -> str:
    return json.dumps([list(p) for p in env])


def of_this_worker() -> tuple:
    """The env_vars this worker process was started with."""
    data = os.environ.get(WORKER_ENV_VAR)
    if not data:
        return ()
    try:
        return check_pairs(json.loads(data))
    except (ValueError, TypeError):
        return ()
