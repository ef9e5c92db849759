"""Ray-compatible exception classes (``zray.exceptions``).

Same names and bases as ``ray.exceptions`` so ``except`` clauses in Ray
programs behave the same::

    RayError(Exception)
    ├── RayTaskError                 a task or actor method raised; ``get`` raises an
    │                                instance that ALSO subclasses the user's type
    ├── RayActorError                the actor died / could not be reached
    │   └── ActorDiedError
    │   └── ActorUnavailableError
    ├── TaskCancelledError           ``cancel`` stopped the task
    ├── WorkerCrashedError           the worker process died while running the task
    ├── ObjectLostError              every copy of an object is gone
    │   ├── OwnerDiedError           ... because the process owning it died
    │   ├── ObjectFetchTimedOutError
    │   ├── ReferenceCountingAssertionError
    │   └── ObjectReconstructionFailedError
    ├── GetTimeoutError (also TimeoutError)
    ├── ObjectStoreFullError
    ├── OutOfMemoryError
    ├── NodeDiedError
    ├── RaySystemError               an internal failure in zray itself
    ├── LocalRayletDiedError
    ├── TaskUnschedulableError / ActorUnschedulableError
    ├── TaskPlacementGroupRemoved / ActorPlacementGroupRemoved
    ├── PendingCallsLimitExceeded
    └── RuntimeEnvSetupError
    AsyncioActorExit(RayError)       raised by exit_actor() inside async actors

Each class has a wire code (``ERROR_CODES``) so failures travel as an int plus
fields, never as a free-form string to be parsed.
"""
from __future__ import annotations

import os
import socket


class RayError(Exception):
    """Super class of all zray exception types."""


class RaySystemError(RayError):
    def __init__(self, client_exc="", traceback_str=None):
        self.client_exc = client_exc
        self.traceback_str = traceback_str

    def __str__(self):
        msg = f"System error: {self.client_exc}"
        if self.traceback_str:
            msg += f"\ntraceback: {self.traceback_str}"
        return msg


class RayTaskError(RayError):
    """A task raised; str() is the remote traceback with a header naming it."""

    def __init__(self, function_name, traceback_str, cause, proctitle=None,
                 pid=None, ip=None, actor_repr=None, actor_id=None):
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.proctitle = proctitle or f"zray::{function_name}"
        self.pid = pid if pid is not None else os.getpid()
        self.ip = ip or _node_ip()
        self.actor_repr = actor_repr
        self.actor_id = actor_id
        Exception.__init__(self, self._message())

    def _message(self):
        """Ray's format: the remote traceback with its "Traceback" line replaced
        by where the task ran, and zray's own frames left out."""
        where = f"{self.proctitle}() (pid={self.pid}, ip={self.ip}"
        if self.actor_repr:
            where += f", actor_id={self.actor_id}, repr={self.actor_repr}"
        where += ")"
        out = []
        in_internal_frame = False
        for line in (self.traceback_str or "").strip().split("\n"):
            if line.startswith("Traceback "):
                out.append(where)
                in_internal_frame = False
            elif line.startswith('  File "'):
                in_internal_frame = _is_internal_frame(line)
                if not in_internal_frame:
                    out.append(line)
            elif in_internal_frame and line.startswith("    "):
                continue      # the source (and caret) lines of a zray frame
            else:
                in_internal_frame = False
                out.append(line)
        if not out or out[0] != where:
            out.insert(0, where)
        return "\n".join(out).rstrip()

    def __str__(self):
        return self._message()

    def __reduce__(self):
        return (RayTaskError, (self.function_name, self.traceback_str, _portable(self.cause),
                               self.proctitle, self.pid, self.ip, self.actor_repr,
                               self.actor_id))

    def as_instanceof_cause(self):
        """An exception that is both a RayTaskError and an instance of the
        user's exception type, so ``except ValueError`` catches it (self if
        that type cannot be subclassed)."""
        cause_cls = type(self.cause)
        if self.cause is None or issubclass(RayTaskError, cause_cls):
            return self
        if isinstance(self.cause, RayTaskError):
            return self.cause
        try:
            return self.make_dual_exception_instance()
        except TypeError as exc:
            import logging
            logging.getLogger("zray.exceptions").warning(
                "User exception type %s in RayTaskError can't be subclassed! This exception is "
                "raised as RayTaskError only. You can use `ray_task_error.cause` to access the "
                "user exception. Failure in subclassing: %s", type(self.cause), exc)
            return self

    def make_dual_exception_instance(self):
        """Ray's: an instance of both RayTaskError and the cause's class
        (TypeError if that class cannot be subclassed).  It pickles as such."""
        cause_cls = type(self.cause)
        cls = _dual_classes.get(cause_cls)
        if cls is None:
            cls = _make_dual_class(cause_cls)
            _dual_classes[cause_cls] = cls
        err = cls.__new__(cls)
        RayTaskError.__init__(err, self.function_name, self.traceback_str, self.cause,
                              self.proctitle, self.pid, self.ip, self.actor_repr,
                              self.actor_id)
        err.args = (self._message(),)
        # Keep the user's exception attributes visible (e.g. e.errno).
        for key, value in getattr(self.cause, "__dict__", {}).items():
            err.__dict__.setdefault(key, value)
        return err


_dual_classes: dict = {}
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _is_internal_frame(line: str) -> bool:
    """A traceback "  File ..." line of zray's own code (not the user's)."""
    path = line[len('  File "'):].split('"', 1)[0]
    return path.startswith(_PACKAGE_DIR) and os.sep + "tests" + os.sep not in path


def _portable(cause):
    """``cause``, or a stand-in that unpickles as the same exception without
    calling its ``__init__`` when the default pickling cannot rebuild it
    (e.g. ``__init__(self, code, detail)`` calling ``super().__init__(text)``)."""
    if cause is None or type(cause).__reduce__ is not BaseException.__reduce__:
        return cause
    import pickle
    import cloudpickle
    try:
        pickle.loads(cloudpickle.dumps(cause, 5))
        return cause
    except Exception:
        return _ExceptionByState(cause)


class _ExceptionByState:
    __slots__ = ("exc",)

    def __init__(self, exc):
        self.exc = exc

    def __reduce__(self):
        exc = self.exc
        return _rebuild_exception, (type(exc), exc.args, dict(getattr(exc, "__dict__", {})))


def _rebuild_exception(cls, args, state):
    err = cls.__new__(cls, *args)
    err.args = args
    if state:
        err.__dict__.update(state)
    return err


def _make_dual_class(cause_cls):
    def __init__(self, cause):  # only used by pickle fallbacks
        self.cause = cause

    def __getattr__(self, name):
        return getattr(self.cause, name)

    def __str__(self):
        return RayTaskError._message(self)

    def __reduce__(self):
        return _rebuild_dual, RayTaskError.__reduce__(self)[1]

    name = f"RayTaskError({cause_cls.__name__})"
    return type(name, (RayTaskError, cause_cls),
                {"__init__": __init__, "__getattr__": __getattr__, "__str__": __str__,
                 "__reduce__": __reduce__, "__module__": __name__})


def qualified_name(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _rebuild_dual(*args):
    return RayTaskError(*args).as_instanceof_cause()


def unserializable_cause(cause, problem, traceback_str: str) -> "RayError":
    """What a task's error carries instead of an exception that cannot be
    pickled (Ray's wording)."""
    err_type = f"{type(cause).__module__}.{type(cause).__name__}"
    return RayError(f"Exception {err_type} isn't serializable: {problem}.\n"
                    f"Original exception details:\n{traceback_str}")


def _node_ip():
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


# Ray's words for an actor that ended itself with exit_actor() / __ray_terminate__.
INTENDED_EXIT_MESSAGE = ("The actor is dead because its worker process has died. Worker exit type: "
                         "INTENDED_USER_EXIT Worker exit detail: Worker exits by an user request. "
                         "exit_actor() is called.")


class RayActorError(RayError):
    def __init__(self, cause=None, actor_id=None, error_msg=None):
        self.actor_id = actor_id
        self.error_msg = error_msg or cause or "The actor died unexpectedly before finishing this task."
        super().__init__(self.error_msg)

    def __str__(self):
        return str(self.error_msg)


class ActorDiedError(RayActorError):
    pass


class ActorUnavailableError(RayActorError):
    pass


class AsyncioActorExit(RayError):
    pass


class TaskCancelledError(RayError):
    def __init__(self, task_id=None, error_message=None):
        self.task_id = task_id
        self.error_message = error_message

    def __str__(self):
        return self.error_message or f"Task: {self.task_id} was cancelled."


class WorkerCrashedError(RayError):
    def __str__(self):
        return ("The worker died unexpectedly while executing this task. "
                + (self.args[0] if self.args else ""))


class ObjectLostError(RayError):
    def __init__(self, object_ref_hex="", owner_address="", call_site="", detail=""):
        self.object_ref_hex = object_ref_hex
        self.owner_address = owner_address
        self.call_site = call_site
        self.detail = detail
        super().__init__(object_ref_hex)

    def __str__(self):
        return (f"Failed to retrieve object {self.object_ref_hex}. "
                f"{self.detail or 'All copies of the object were lost.'}")


class OwnerDiedError(ObjectLostError):
    def __str__(self):
        return (f"Failed to retrieve object {self.object_ref_hex}: its owner "
                f"({self.owner_address or 'unknown'}) has died. "
                f"{self.detail or 'Objects fate-share with the process that created them.'}")


class ObjectFetchTimedOutError(ObjectLostError):
    pass


class ReferenceCountingAssertionError(ObjectLostError):
    pass


class ObjectReconstructionFailedError(ObjectLostError):
    pass


class GetTimeoutError(RayError, TimeoutError):
    pass


class ObjectStoreFullError(RayError):
    pass


class OutOfMemoryError(RayError):
    pass


class OutOfDiskError(RayError):
    pass


class NodeDiedError(RayError):
    pass


class LocalRayletDiedError(RayError):
    pass


class TaskUnschedulableError(RayError):
    pass


class ActorUnschedulableError(RayError):
    pass


class TaskPlacementGroupRemoved(RayError):
    pass


class ActorPlacementGroupRemoved(RayError):
    pass


class PendingCallsLimitExceeded(RayError):
    pass


class ActorAlreadyExistsError(ValueError, RayError):
    """A named actor with that name already exists (a ValueError too, as Ray's)."""


class RuntimeEnvSetupError(RayError):
    pass


class CrossLanguageError(RayError):
    pass


# Wire codes: failures cross processes as (code, message), never as parsed text.
ERROR_CODES = {
    1: RaySystemError,
    2: RayActorError,
    3: ActorDiedError,
    4: TaskCancelledError,
    5: WorkerCrashedError,
    6: ObjectLostError,
    7: OwnerDiedError,
    8: ObjectStoreFullError,
    9: GetTimeoutError,
    10: ActorUnschedulableError,
    11: TaskUnschedulableError,
}
CODE_OF = {cls: code for code, cls in ERROR_CODES.items()}

__all__ = [name for name, obj in list(globals().items())
           if isinstance(obj, type) and issubclass(obj, BaseException)]
