"""``runtime_env``: Ray's per-job / per-task / per-actor environment.

zray supports:

* ``env_vars``: workers are started with those variables set (the raylet
  keeps workers of different environments apart, as Ray does), so a library
  that reads one at import time sees it too;
* ``working_dir`` (a local directory or .zip): copied once per session into
  the session directory; workers start in that copy, with it first on
  ``sys.path`` (the driver's own cwd is left alone, as in Ray);
* ``py_modules`` (local package directories, .py files, .zip/.whl files or
  imported modules): copied likewise and put on the workers' ``sys.path``;
* ``excludes``: glob patterns (relative paths or names) left out of both.

Ray's other fields (``pip``, ``conda``, ``container``, remote URIs, ...)
raise a clear error instead of being ignored: this machine has no network
to fetch them.  An environment travels as a sorted tuple of (name, value)
pairs; the two file fields use names no variable can have ("\0..."), and
a task's fields override its job's (or parent's) per name.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import types

SUPPORTED_FIELDS = ("env_vars", "working_dir", "py_modules", "excludes")
# Set in a worker's environment: the pairs it was started with (JSON).
WORKER_ENV_VAR = "ZRAY_RUNTIME_ENV_VARS"
# Marks the environment inside a task's scheduling key (zray.remote_function).
ENV_KEY = "\0runtime_env"
# Pair names of the file fields: the source path (JSON list for py_modules)
# until materialize() copies it into the session, then the copy's path.
WORKING_DIR = "\0working_dir"
PY_MODULES = "\0py_modules"
EXCLUDES = "\0excludes"
MAX_FILES_BYTES = 500 * 1024 * 1024      # Ray's limit for working_dir / py_modules
_SNAPSHOTS_DIR = "runtime_resources"


def normalize(runtime_env, what: str = "runtime_env") -> tuple:
    """The env_vars of a user's ``runtime_env`` as sorted (name, value) pairs."""
    if runtime_env is None:
        return ()
    if not isinstance(runtime_env, dict):
        raise TypeError(f"{what} must be a dict, got {type(runtime_env).__name__}.")
    unsupported = sorted(k for k, v in runtime_env.items() if k not in SUPPORTED_FIELDS and v)
    if unsupported:
        raise ValueError(f"{what} field(s) {unsupported} are not supported by zray; "
                         f"only {', '.join(repr(f) for f in SUPPORTED_FIELDS)} are.")
    env_vars = runtime_env.get("env_vars") or {}
    if not isinstance(env_vars, dict):
        raise TypeError(f"{what} 'env_vars' must be a dict, got {type(env_vars).__name__}.")
    for name, value in env_vars.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError(f"{what} 'env_vars' must map str to str, got {name!r}: {value!r}.")
        if not name or "=" in name or "\0" in name or "\0" in value:
            raise ValueError(f"{what} 'env_vars' has an invalid variable name or value: {name!r}.")
    pairs = dict(env_vars)
    pairs.update(_file_fields(runtime_env, what))
    return tuple(sorted(pairs.items()))


def _file_fields(runtime_env: dict, what: str) -> dict:
    """The working_dir / py_modules / excludes pairs, sources checked."""
    fields = {}
    working_dir = runtime_env.get("working_dir")
    if working_dir:
        fields[WORKING_DIR] = _local_source(working_dir, f"{what} 'working_dir'", dirs_only=True)
    modules = runtime_env.get("py_modules")
    if modules:
        if not isinstance(modules, (list, tuple)):
            raise TypeError(f"{what} 'py_modules' must be a list, got {type(modules).__name__}.")
        fields[PY_MODULES] = json.dumps([_local_source(m, f"{what} 'py_modules'") for m in modules])
    excludes = runtime_env.get("excludes")
    if excludes:
        if not isinstance(excludes, (list, tuple)) or not all(isinstance(e, str) for e in excludes):
            raise TypeError(f"{what} 'excludes' must be a list of str, got {excludes!r}.")
        fields[EXCLUDES] = json.dumps(sorted(excludes))
    return fields


def _local_source(source, what: str, dirs_only: bool = False) -> str:
    if isinstance(source, types.ModuleType):
        path = getattr(source, "__file__", None)
        if path is None:
            raise ValueError(f"{what}: module {source.__name__} has no file to ship.")
        source = os.path.dirname(path) if os.path.basename(path) == "__init__.py" else path
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"{what} must be a local path, got {type(source).__name__}.")
    source = os.fspath(source)
    if source.startswith("file://"):   # a local URI: file:///dir or file://localhost/dir
        from urllib.parse import unquote, urlparse
        parsed = urlparse(source)
        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"{what} {source!r}: a file:// URI must name this host "
                             f"(file:///path or file://localhost/path).")
        source = unquote(parsed.path)
    if "://" in source:
        raise ValueError(f"{what} {source!r}: remote URIs are not supported by zray "
                         f"(give a local directory or .zip file).")
    path = os.path.abspath(os.path.expanduser(source))
    if os.path.isdir(path) or (os.path.isfile(path) and (
            path.endswith((".zip", ".whl")) or (not dirs_only and path.endswith(".py")))):
        return path
    raise ValueError(f"{what} {source!r} does not exist or is not a directory"
                     f"{'' if dirs_only else ', .py file'} or .zip file.")


def materialize(env: tuple, session_dir: str) -> tuple:
    """``env`` with its working_dir / py_modules sources replaced by copies in
    the session (made once per source and session), as Ray uploads them."""
    if not env or not any(name.startswith("\0") for name, _ in env):
        return env
    pairs = dict(env)
    excludes = json.loads(pairs.pop(EXCLUDES, "[]"))
    root = os.path.join(session_dir, _SNAPSHOTS_DIR)
    if WORKING_DIR in pairs:
        pairs[WORKING_DIR] = _snapshot(pairs[WORKING_DIR], root, excludes, unwrap_zip=True)
    if PY_MODULES in pairs:
        pairs[PY_MODULES] = json.dumps([_snapshot(p, root, excludes, unwrap_zip=False)
                                        for p in json.loads(pairs[PY_MODULES])])
    return tuple(sorted(pairs.items()))


_snapshots: dict = {}     # (root, source, excludes) -> its copy


def _snapshot(source: str, root: str, excludes: list, unwrap_zip: bool) -> str:
    import shutil      # here: every zray process imports this module, few copy files
    import zipfile
    if source.startswith(root + os.sep):
        return source                      # already a copy (a nested task's inherited env)
    key = (root, source, tuple(excludes))
    copy = _snapshots.get(key)
    if copy is not None and os.path.exists(copy):
        return copy
    digest = hashlib.sha1(repr(key).encode()).hexdigest()[:16]
    target = os.path.join(root, f"{os.path.basename(source) or 'root'}_{digest}")
    staging = f"{target}.tmp{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    if os.path.isdir(source):
        _copy_tree(source, os.path.join(staging, os.path.basename(source)), excludes)
        copied = os.path.join(target, os.path.basename(source))
    elif source.endswith((".zip", ".whl")) and unwrap_zip:
        with zipfile.ZipFile(source) as archive:
            archive.extractall(staging)
        tops = os.listdir(staging)
        only = tops[0] if len(tops) == 1 and os.path.isdir(os.path.join(staging, tops[0])) else ""
        copied = os.path.join(target, only) if only else target
    else:   # a .py file or an archive for sys.path: next to nothing else
        shutil.copy2(source, os.path.join(staging, os.path.basename(source)))
        copied = os.path.join(target, os.path.basename(source))
    if os.path.exists(target):
        shutil.rmtree(staging, ignore_errors=True)     # another thread made it meanwhile
    else:
        os.rename(staging, target)
    _snapshots[key] = copied
    return copied


def _copy_tree(source: str, target: str, excludes: list) -> None:
    import fnmatch
    import shutil
    total = 0

    def ignore(directory, names):
        nonlocal total
        skipped = set()
        for name in names:
            rel = os.path.relpath(os.path.join(directory, name), source)
            if any(fnmatch.fnmatch(rel, pattern.strip("/")) or fnmatch.fnmatch(name, pattern)
                   for pattern in excludes) or name == "__pycache__":
                skipped.add(name)
                continue
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                total += os.path.getsize(path)
                if total > MAX_FILES_BYTES:
                    raise ValueError(f"runtime_env files under {source} are larger than "
                                     f"{MAX_FILES_BYTES >> 20} MiB (Ray's limit); leave the big "
                                     f"ones out with 'excludes'.")
        return skipped
    shutil.copytree(source, target, ignore=ignore, symlinks=True)


def apply_in_worker(pairs: tuple) -> None:
    """In a new worker, before it imports user code: variables, cwd, sys.path."""
    files = {name: value for name, value in pairs if name.startswith("\0")}
    os.environ.update({name: value for name, value in pairs if not name.startswith("\0")})
    for module_path in reversed(json.loads(files.get(PY_MODULES, "[]"))):
        entry = module_path if module_path.endswith((".zip", ".whl")) else os.path.dirname(module_path)
        sys.path.insert(0, entry)
    working_dir = files.get(WORKING_DIR)
    if working_dir:
        os.chdir(working_dir)
        sys.path.insert(0, working_dir)


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


def as_dict(env: tuple) -> dict:
    """``env`` pairs in the shape of a user's runtime_env (get_runtime_context())."""
    pairs = dict(env or ())
    out: dict = {}
    env_vars = {k: v for k, v in pairs.items() if not k.startswith("\0")}
    if env_vars:
        out["env_vars"] = env_vars
    if WORKING_DIR in pairs:
        out["working_dir"] = pairs[WORKING_DIR]
    if PY_MODULES in pairs:
        out["py_modules"] = json.loads(pairs[PY_MODULES])
    return out
