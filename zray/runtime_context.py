"""``zray.get_runtime_context()``: ids of the job, task, actor, node, worker."""
from __future__ import annotations

from . import ids


class RuntimeContext:
    def __init__(self, worker):
        self._worker = worker

    def get_job_id(self) -> str:
        return self._ctx().task_id[12:16].hex()

    @property
    def job_id(self):
        return ids.JobID(self._ctx().task_id[12:16])

    def get_task_id(self):
        if self._worker.is_driver:
            return None
        return self._ctx().task_id.hex()

    @property
    def task_id(self):
        return None if self._worker.is_driver else ids.TaskID(self._ctx().task_id)

    def get_actor_id(self):
        actor_id = self._worker.actor_id
        return actor_id.hex() if actor_id else None

    @property
    def actor_id(self):
        actor_id = self._worker.actor_id
        return ids.ActorID(actor_id) if actor_id else None

    def get_node_id(self) -> str:
        return self._worker.node_id.hex()

    @property
    def node_id(self):
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
        return False

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

    def get(self) -> dict:
        return {"job_id": self.job_id, "node_id": self.node_id, "namespace": self.namespace,
                "task_id": self.task_id, "actor_id": self.actor_id}

    def _ctx(self):
        return self._worker.task_context()
