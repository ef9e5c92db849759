"""The public API functions (Ray's names and semantics)."""
from __future__ import annotations

import atexit
import logging
import os
import threading

from . import exceptions
from .actor import ActorClass, ActorHandle, get_handle
from .core import process_state
from .core.object_ref_generator import ObjectRefGenerator
from .core.object_ref import ObjectRef
from .remote_function import RemoteFunction
from .node.gc_trigger import DEFAULTS as GC_DEFAULTS, gc_config
from .sockets.messages import GcsMethod

log = logging.getLogger("zray")

_init_lock = threading.RLock()
_cluster = None          # NodeProcesses of the embedded cluster, if we started one
_log_monitor = None      # forwards task prints to this console
_INIT_KWARGS = {"address", "num_cpus", "num_gpus", "resources", "object_store_memory",
                "namespace", "ignore_reinit_error", "include_dashboard", "dashboard_host",
                "dashboard_port", "logging_level", "log_to_driver", "configure_logging",
                "local_mode", "runtime_env", "_temp_dir", "job_config", "labels",
                "_system_config", "logging_format", "_node_ip_address", "storage",
                "_memory", "memory", "_plasma_directory", "_enable_object_reconstruction"}


class ZrayContext(dict):
    """What init() returns (Ray returns a context usable as a dict)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        shutdown()

    @property
    def address_info(self):
        return self

    def disconnect(self):
        shutdown()


def init(address: str | None = None, *, num_cpus=None, num_gpus=None, resources=None,
         object_store_memory=None, namespace=None, ignore_reinit_error=False,
         log_to_driver: bool = True, **kwargs):
    """Start an embedded single-host cluster, or connect to a running one."""
    global _cluster
    unknown = [key for key in kwargs if key not in _INIT_KWARGS]
    if unknown:   # most likely a typo (Ray's error)
        raise RuntimeError(f"Unknown keyword argument(s): {', '.join(unknown)}")
    with _init_lock:
        if process_state.worker is not None:
            if ignore_reinit_error:
                return _context()
            raise RuntimeError("Maybe you called zray.init twice by accident? This error can be "
                               "suppressed by passing in 'ignore_reinit_error=True' or by calling "
                               "'zray.shutdown()' prior to 'zray.init()'.")
        from .node import launcher
        from . import runtime_env
        job_env = runtime_env.normalize(kwargs.get("runtime_env"), "init(runtime_env=...)")
        address = address or os.environ.get("ZRAY_ADDRESS") or os.environ.get("RAY_ADDRESS") or None
        if address is None or address == "local":
            if resources is not None and not isinstance(resources, dict):
                raise TypeError("resources must be a dict")
            session_dir = launcher.make_session_dir()
            cpus = num_cpus if num_cpus is not None else os.cpu_count()
            node = launcher.start_node(head=True, session_dir=session_dir, num_cpus=cpus,
                                       num_gpus=num_gpus or 0, resources=resources,
                                       object_store_memory=object_store_memory,
                                       watch_pid=os.getpid(),
                                       system_config=_system_config(kwargs))
            _cluster = node
            raylet_endpoint = node.raylet_ipc
        else:
            if num_cpus is not None or num_gpus is not None or resources is not None:
                raise ValueError("When connecting to an existing cluster, num_cpus, num_gpus and "
                                 "resources must not be provided.")
            session_dir, raylet_endpoint = launcher.find_cluster(address)
        try:
            _connect_driver(session_dir, raylet_endpoint, namespace)
            if _cluster is not None:   # other drivers may join it by its address, as in Ray
                launcher.record_cluster(session_dir, {"gcs_address": process_state.worker.gcs_address,
                                                      "ipc": raylet_endpoint},
                                        [p.pid for p in _cluster.procs], embedded=True)
            # Inherited by every task and actor; files copied into the session once.
            process_state.worker.runtime_env = runtime_env.materialize(job_env, session_dir)
            if log_to_driver:
                global _log_monitor
                from .core.log_monitor import LogMonitor
                _log_monitor = LogMonitor(os.path.join(session_dir, "logs")).start()
        except BaseException:
            if _cluster is not None:
                _cluster.stop()
                _cluster = None
            raise
        return _context()


SYSTEM_CONFIG_KEYS = {"object_store_full_timeout_s", "object_spilling_config",
                      *GC_DEFAULTS}   # the GC knobs: zray/node/gc_trigger.py


def _system_config(kwargs) -> dict:
    """Ray's ``_system_config``.  Ray has hundreds of tuning keys that programs
    and test fixtures pass; zray applies the ones it has and says which it
    ignores, rather than refusing to start."""
    config = kwargs.get("_system_config") or {}
    if not isinstance(config, dict):
        raise TypeError("The _system_config must be a dict.")
    bad = [key for key in config if not isinstance(key, str) or not key.isidentifier()]
    if bad:
        raise ValueError(f"_system_config keys are Ray config names, got {bad!r}")
    ignored = sorted(set(config) - SYSTEM_CONFIG_KEYS)
    if ignored:
        log.warning("zray ignores these _system_config keys (it applies only %s): %s",
                    sorted(SYSTEM_CONFIG_KEYS), ignored)
        config = {key: value for key, value in config.items() if key in SYSTEM_CONFIG_KEYS}
    if "object_spilling_config" in config:
        from .node.launcher import spill_directory
        spill_directory(config["object_spilling_config"])   # reject a bad one here, not in the raylet
    gc_config(config)   # likewise a bad GC knob
    return config


def _connect_driver(session_dir, raylet_endpoint, namespace):
    from .core.core_worker import CoreWorker
    import uuid
    cw = CoreWorker(is_driver=True, raylet_endpoint=raylet_endpoint, session_dir=session_dir,
                    job_id=b"\0\0\0\0", namespace=namespace or str(uuid.uuid4()))
    process_state.worker = cw
    try:
        cw.connect()
        job = cw.gcs_call(GcsMethod.REGISTER_JOB, {"pid": os.getpid(), "namespace": cw.namespace})
        from . import ids
        cw.job_id = ids.job_id_from_int(job)
        cw.root_context.task_id = ids.root_task_id(cw.job_id)
        # Workers look the namespace up to run this job's tasks in it.
        from .core.core_worker import JOB_NAMESPACE_KV
        cw.gcs_call(GcsMethod.KV_PUT, JOB_NAMESPACE_KV, cw.job_id, cw.namespace.encode(), True)
    except BaseException:
        process_state.worker = None
        cw.shutdown()
        raise


def _context():
    cw = process_state.worker
    return ZrayContext(session_dir=cw.session_dir, node_id=cw.node_id.hex(),
                       gcs_address=cw.gcs_address, raylet_socket_name=cw.raylet_endpoint,
                       address=cw.gcs_address, namespace=cw.namespace)


def _auto_init():
    """The process's core worker, starting zray first as Ray does unless the
    program turned that off (RAY_ENABLE_AUTO_CONNECT=0, Ray's switch)."""
    worker = process_state.worker
    if worker is None:
        if os.environ.get("RAY_ENABLE_AUTO_CONNECT", "") == "0":
            raise exceptions.RaySystemError(
                "zray has not been started yet (RAY_ENABLE_AUTO_CONNECT=0 turns off starting "
                "it on first use). You can start it with 'zray.init()'.")
        with _init_lock:
            if process_state.worker is None:
                init()
        worker = process_state.worker
    return worker


def is_initialized() -> bool:
    return process_state.worker is not None


def shutdown(_exiting_interpreter: bool = False) -> None:
    global _cluster, _log_monitor
    with _init_lock:
        if _log_monitor is not None:
            _log_monitor.stop()
            _log_monitor = None
        cw = process_state.worker
        if cw is not None and cw.is_driver:
            try:
                cw.gcs_call(GcsMethod.JOB_FINISHED, cw.job_id, timeout=2)
            except Exception:
                pass
            process_state.worker = None
            cw.shutdown()
        if _cluster is not None:
            _cluster.stop()
            _cluster = None


atexit.register(shutdown, True)


def remote(*args, **kwargs):
    """``@zray.remote`` / ``@zray.remote(num_cpus=...)`` on a function or class."""
    if len(args) == 1 and not kwargs and callable(args[0]):
        return _make_remote(args[0], {})
    if args or not kwargs:   # Ray refuses a bare `@ray.remote()` too
        raise TypeError("The @zray.remote decorator must be applied either with no arguments "
                        "and no parentheses, for example '@zray.remote', or it must be applied "
                        "using some of the arguments 'num_returns', 'num_cpus', 'num_gpus', "
                        "'memory', 'object_store_memory', 'resources', 'max_calls', or "
                        "'max_restarts', like '@zray.remote(num_returns=2, resources={\"CustomResource\": 1})'.")

    def decorate(obj):
        return _make_remote(obj, kwargs)
    return decorate


def _make_remote(obj, options):
    import inspect
    if inspect.isclass(obj):
        return ActorClass(obj, options)
    if callable(obj):
        return RemoteFunction(obj, options)
    raise TypeError("The @zray.remote decorator must be applied to either a function or a class.")


def _check_timeout(timeout):
    if timeout is not None:
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
            raise TypeError(f"'timeout' must be a number or None, got {type(timeout).__name__}")
        if timeout < 0:
            raise ValueError("'timeout' must be a non-negative number, got {}".format(timeout))


def get(object_refs, *, timeout=None):
    """Value of one ObjectRef, or a list of values for a list of refs."""
    _check_timeout(timeout)
    cw = _auto_init()
    if type(object_refs) is ObjectRef:
        return cw.get([object_refs], timeout)[0]
    if isinstance(object_refs, (list, tuple)):
        for ref in object_refs:
            if type(ref) is not ObjectRef:
                raise TypeError(f"'object_refs' must either be an ObjectRef or a list of "
                                f"ObjectRefs, got a list containing {type(ref).__name__}: {ref!r}")
        return cw.get(list(object_refs), timeout)
    # Ray raises ValueError for a non-list and TypeError for a bad list element.
    raise ValueError(f"'object_refs' must either be an ObjectRef or a list of ObjectRefs, "
                     f"got {type(object_refs).__name__}: {object_refs!r}")


def put(value, *, _owner=None):
    return _auto_init().put(value)


def wait(object_refs, *, num_returns: int = 1, timeout=None, fetch_local: bool = True):
    if isinstance(object_refs, ObjectRef) or not isinstance(object_refs, (list, tuple)):
        raise TypeError(f"wait() expected a list of ObjectRef or ObjectRefGenerator, got "
                        f"{type(object_refs).__name__}")
    _check_timeout(timeout)
    refs = list(object_refs)
    for ref in refs:
        if type(ref) is not ObjectRef and type(ref) is not ObjectRefGenerator:
            raise TypeError(f"wait() expected a list of ObjectRef or ObjectRefGenerator, got a "
                            f"list containing {type(ref).__name__}: {ref!r}")
    if not refs:
        return [], []   # as Ray does
    if len(set(refs)) != len(refs):
        raise ValueError("Wait requires a list of unique object refs.")
    if not isinstance(num_returns, int) or num_returns <= 0:
        raise ValueError(f"Invalid number of objects to return {num_returns}.")
    if num_returns > len(refs):
        raise ValueError("num_returns cannot be greater than the number of objects provided "
                         f"to zray.wait ({num_returns} > {len(refs)}).")
    return _auto_init().wait(refs, num_returns, timeout)


def cancel(object_ref, *, force: bool = False, recursive: bool = True) -> None:
    if type(object_ref) is ObjectRefGenerator:
        object_ref._cancelled = True   # its next() now ends the stream with the task's end
        object_ref = object_ref.completed()
    if type(object_ref) is not ObjectRef:
        raise TypeError(f"cancel() expected an ObjectRef or ObjectRefGenerator, "
                        f"got {type(object_ref).__name__}")
    cw = _auto_init()
    task_id = object_ref._id[:16]
    cw.loop.acquire()
    try:
        if cw.tasks.cancel(task_id, force, recursive):
            return
        if force and task_id in cw.actors.in_flight:
            raise ValueError("force=True is not supported for actor tasks.")
        cw.actors.cancel(task_id, force, recursive)
    finally:
        cw.loop.release()


def kill(actor, *, no_restart: bool = True) -> None:
    if not isinstance(actor, ActorHandle):
        raise ValueError(f"zray.kill() only supported for actors. For tasks, try zray.cancel(). "
                         f"Got: {type(actor).__name__}.")
    _auto_init().gcs_call(GcsMethod.KILL_ACTOR, actor._actor_id, no_restart)


def get_actor(name: str, namespace: str | None = None) -> ActorHandle:
    if not name or not isinstance(name, str):
        raise ValueError("Please supply a non-empty value to get_actor")
    cw = _auto_init()
    from .core.core_worker import GcsError
    cw.loop.acquire()
    try:
        cw.flush_ref_ops()   # an actor whose last handle was just dropped is gone, as in Ray
    finally:
        cw.loop.release()
    try:
        info = cw.gcs_call(GcsMethod.GET_NAMED_ACTOR, name, namespace or cw.current_namespace())
    except GcsError:
        raise ValueError(f"Failed to look up actor with name '{name}'. This could because 1. You "
                         f"are trying to look up a named actor you didn't create. 2. The named "
                         f"actor died. 3. You did not use a namespace matching the namespace of "
                         f"the actor.") from None
    return get_handle(cw, info["actor_id"])


def nodes() -> list:
    cw = _auto_init()
    out = []
    for node in cw.gcs_call(GcsMethod.GET_ALL_NODES):
        alive = node.get("state") == "ALIVE"
        endpoint = node.get("raylet_endpoint", "")
        port = endpoint.rsplit(":", 1)[-1] if endpoint.startswith("tcp://") else ""
        node_id = node["node_id"].hex()
        # Ray's keys; ports zray does not have (metrics, dashboard, runtime env) are -1 as
        # Ray reports an agent that is not running.  Objects travel over the raylet's port.
        out.append({"NodeID": node_id, "Alive": alive, "alive": alive,
                    "NodeManagerAddress": node["node_ip"], "NodeManagerHostname": node["node_ip"],
                    "NodeName": node["node_ip"],
                    "NodeManagerPort": int(port) if port.isdigit() else -1,
                    "ObjectManagerPort": int(port) if port.isdigit() else -1,
                    "ObjectStoreSocketName": "", "RayletSocketName": endpoint,
                    "MetricsExportPort": -1, "MetricsAgentPort": -1,
                    "DashboardAgentListenPort": -1, "RuntimeEnvAgentPort": -1,
                    "DeathReason": 0 if alive else 1,
                    "DeathReasonMessage": "" if alive else "the GCS marked the node dead",
                    "Resources": node.get("resources_total", {}) if alive else {},
                    "Labels": {"ray.io/node-id": node_id}})
    return out


def cluster_resources() -> dict:
    total, _ = _auto_init().gcs_call(GcsMethod.GET_CLUSTER_RESOURCES)
    return total


def available_resources() -> dict:
    _, available = _auto_init().gcs_call(GcsMethod.GET_CLUSTER_RESOURCES)
    return {k: v for k, v in available.items() if v > 0}


def get_gpu_ids() -> list:
    """The GPU device ids the raylet gave the current task or actor ([] for
    none, and on the driver); CUDA_VISIBLE_DEVICES lists the same ones."""
    worker = process_state.require_worker()
    if worker.actor_id is not None:
        return list(getattr(worker, "actor_gpu_ids", ()))
    if worker.is_driver:
        return []
    return list(worker.task_context().gpu_ids)


def timeline(filename=None):
    """Chrome trace of the tasks that ran (Ray's ray.timeline); see zray.util.state."""
    from .util.state import timeline as tasks_timeline
    return tasks_timeline(filename)


def get_runtime_context():
    """Starts zray if needed, as Ray's does."""
    from .runtime_context import RuntimeContext
    return RuntimeContext(_auto_init())
