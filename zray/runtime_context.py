"""``zray.get_runtime_context()``: ids of the job, task, actor, node, worker."""
from __future__ import annotations

import inspect

from . import ids


def _deprecated(message: str) -> None:
    from .util.annotations import warn_deprecated
    warn_deprecated(message, stacklevel=4)


class RuntimeContext:
    def __init__(self, worker):
        self._worker = worker

    def get_job_id(self) -> str:
        return self._ctx().task_id[12:16].hex()

    @property
    def job_id(self):
        _deprecated("Use get_job_id() instead")
        return self._job_id()

    def _job_id(self):
        return ids.JobID(self._ctx().task_id[12:16])

    def get_task_id(self):
        if self._worker.is_driver:
            return None
        return self._ctx().task_id.hex()

    @property
    def task_id(self):
        _deprecated("Use get_task_id() instead")
        return self._task_id()

    def _task_id(self):
        return None if self._worker.is_driver else ids.TaskID(self._ctx().task_id)

    def get_actor_id(self):
        actor_id = self._worker.actor_id
        return actor_id.hex() if actor_id else None

    @property
    def actor_id(self):
        _deprecated("Use get_actor_id() instead")
        return self._actor_id()

    def _actor_id(self):
        actor_id = self._worker.actor_id
        return ids.ActorID(actor_id) if actor_id else None

    def get_node_id(self) -> str:
        return self._worker.node_id.hex()

    @property
    def node_id(self):
        _deprecated("Use get_node_id() instead")
        return self._node_id()

    def _node_id(self):
        return ids.NodeID(self._worker.node_id)

    def get_worker_id(self) -> str:
        return self._worker.worker_id.hex()

    @property
    def namespace(self) -> str:
        return self._worker.current_namespace()

    def get_namespace(self) -> str:
        return self._worker.current_namespace()

    @property
    def current_actor(self):
        from .actor import get_handle
        if self._worker.actor_id is None:
            raise RuntimeError("This method is only available in an actor.")
        return get_handle(self._worker, self._worker.actor_id)

    @property
    def was_current_actor_reconstructed(self) -> bool:
        """Whether this actor has been restarted (its creation ran again)."""
        if self._worker.actor_id is None:
            raise AssertionError("This method should't be called inside Ray tasks.")
        return bool(getattr(self._worker, "actor_restarts", 0))

    def get_assigned_resources(self) -> dict:
        """Resources the current task or actor holds while it runs (Ray's
        default: 1 CPU for a task, nothing for an actor; {} on the driver)."""
        worker = self._worker
        if worker.actor_id is not None:
            shape = getattr(worker, "actor_resources", None) or {}
        elif worker.is_driver:
            shape = {}
        else:
            shape = self._ctx().resources
            if shape is None:
                shape = {"CPU": 1}
        return {name: float(amount) for name, amount in shape.items() if amount}

    def get_accelerator_ids(self) -> dict:
        """Accelerator ids the current task or actor may use, as strings (Ray's)."""
        from .api import get_gpu_ids
        return {"GPU": [str(i) for i in get_gpu_ids()]}

    def get_actor_name(self):
        """The current actor's name ("" if it has none, as in Ray), or None
        outside an actor."""
        if not self._worker.actor_id:
            return None
        return getattr(self._worker, "actor_name", None) or ""

    def get_task_name(self):
        """The running task's name (``Class.method`` for actor calls), None on the driver."""
        if self._worker.is_driver:
            return None
        name = self._ctx().function_name
        class_name = getattr(self._worker, "actor_class_name", None)
        return f"{class_name}.{name}" if self._worker.actor_id and class_name else name

    def get_task_function_name(self):
        """Ray's: the module-qualified function of what runs (``module.f``, or
        ``module.Class.method`` in an actor); None on the driver."""
        worker = self._worker
        if worker.is_driver:
            return None
        ctx = self._ctx()
        executor = getattr(worker, "executor", None)
        actor = getattr(executor, "actor", None)
        if worker.actor_id and actor is not None:
            cls = type(actor)
            method = getattr(cls, ctx.function_name, None)
            if inspect.iscoroutinefunction(method):
                # Ray names an async actor's methods by their qualified name
                # (``module.outer.<locals>.Class.method``), sync ones by class.
                return f"{cls.__module__}.{method.__qualname__}"
            return f"{cls.__module__}.{cls.__name__}.{ctx.function_name}"
        spec = getattr(executor, "running", None)
        if spec is not None and spec.task_id == ctx.task_id:
            function = worker.functions.loaded(spec.function_id)
            if function is not None:
                return f"{function.__module__}.{getattr(function, '__name__', ctx.function_name)}"
        return self.get_task_name()

    def get_placement_group_id(self):
        """Hex id of the placement group the current task or actor runs in, or None."""
        from .scheduling import current_group
        group = None if self._worker.is_driver else current_group(self._worker)
        return group[0].hex() if group else None

    @property
    def current_placement_group_id(self):
        _deprecated("Use get_placement_group_id() instead")
        hex_id = self.get_placement_group_id()
        return ids.PlacementGroupID.from_hex(hex_id) if hex_id else ids.PlacementGroupID.nil()

    @property
    def should_capture_child_tasks_in_placement_group(self) -> bool:
        from .scheduling import current_group
        group = None if self._worker.is_driver else current_group(self._worker)
        return bool(group and group[1])

    @property
    def gcs_address(self) -> str:
        return self._worker.gcs_address.split("://", 1)[-1]

    @property
    def runtime_env(self) -> dict:
        """The runtime_env in effect, in Ray's shape."""
        from . import runtime_env
        return runtime_env.as_dict(self._worker.runtime_env)

    def get_runtime_env_string(self) -> str:
        import json
        return json.dumps(self.runtime_env)

    def get_temp_dir(self) -> str:
        import os
        return os.path.dirname(self._worker.session_dir)

    def get_session_name(self) -> str:
        import os
        return os.path.basename(self._worker.session_dir)

    def get_node_labels(self) -> dict:
        return {"ray.io/node-id": self.get_node_id()}

    def is_canceled(self) -> bool:
        """Whether the running task was asked to cancel and has not stopped yet."""
        executor = getattr(self._worker, "executor", None)
        if executor is None or self._worker.is_driver:
            return False
        return executor.cancelled == self._ctx().task_id

    def get(self) -> dict:
        """Ray's (deprecated) dict of the current ids: a task's and an actor's
        only where there are ones."""
        _deprecated("Use get_xxx_id() methods to get relevant ids instead")
        context = {"job_id": self._job_id(), "node_id": self._node_id(),
                   "namespace": self.namespace}
        if not self._worker.is_driver:
            task_id = self._task_id()
            if task_id is not None:
                context["task_id"] = task_id
            actor_id = self._actor_id()
            if actor_id is not None:
                context["actor_id"] = actor_id
        return context

    def _ctx(self):
        return self._worker.task_context()


def get_runtime_context() -> RuntimeContext:
    """``ray.runtime_context.get_runtime_context()``: the same as
    ``zray.get_runtime_context()``."""
    from .api import get_runtime_context as current
    return current()
