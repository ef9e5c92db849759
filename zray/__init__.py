"""zray: Ray Core's Python API on ZeroMQ.  ``import zray as ray``."""
from . import exceptions
from .actor import ActorClass, ActorHandle, method
from .api import (available_resources, cancel, cluster_resources, get, get_actor,
                  get_gpu_ids, get_runtime_context, init, is_initialized, kill, nodes, put, remote, shutdown,
                  timeline, wait)
import cloudpickle   # ray.cloudpickle
from .core.object_ref import ObjectRef
ObjectID = ObjectRef   # Ray keeps ObjectID as the old name of ObjectRef
from .ids import ActorID, JobID, NodeID, PlacementGroupID, TaskID, WorkerID
from .core.object_ref_generator import DynamicObjectRefGenerator, ObjectRefGenerator
from .remote_function import RemoteFunction
from . import util   # Ray programs use ray.util.* after a plain `import ray`
from . import _private  # noqa: F401  (ray._private.internal_api.global_gc)
from . import runtime_context  # noqa: F401  (ray.runtime_context.get_runtime_context)

__version__ = "0.1.0"

__all__ = ["ActorClass", "ActorHandle", "ActorID", "DynamicObjectRefGenerator", "JobID", "NodeID", "ObjectID", "ObjectRef",
           "ObjectRefGenerator", "PlacementGroupID", "RemoteFunction", "TaskID", "WorkerID",
           "available_resources", "cloudpickle",
           "cancel", "cluster_resources", "exceptions", "get", "get_actor", "get_gpu_ids", "get_runtime_context",
           "init", "is_initialized", "kill", "method", "nodes", "put", "remote", "shutdown",
           "timeline", "util", "wait", "__version__"]
