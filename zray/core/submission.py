"""Building task specs from Python calls (mixin for CoreWorker).

Turns ``f.remote(*args, **kwargs)`` / ``actor.method.remote(...)`` /
``Cls.remote(...)`` into TaskSpecs: top-level ObjectRef arguments become
ArgSlots resolved by the owner, everything else is pickled once; very large
plain arguments are put into the object store first (as Ray does).
"""
from __future__ import annotations

from .. import exceptions, ids, serialization
from ..serialization import EMPTY_ARGS_BLOB, INLINE_THRESHOLD, SerializationError
from .actor_submitter import ActorCall
from .object_ref import ObjectRef
from .object_ref_generator import ObjectRefGenerator, dynamic_result
from .task_events import ACTOR_TASK as ACTOR_TASK_TYPE, NORMAL_TASK as NORMAL_TASK_TYPE
from .task_spec import ACTOR_CREATION_TASK, ACTOR_TASK, NORMAL_TASK, ArgSlot, TaskSpec
from .task_submitter import PendingTask


STREAMING = "streaming"                 # num_returns of a streaming generator call
DYNAMIC = "dynamic"                     # Ray's older form: one ref to all the items, at the end
_GENERATOR_OPTIONS = {"generator": True}


class Submission:
    def encode_args(self, args, kwargs, function_name: str):
        """(args_blob, [top-level ObjectRef deps], [ObjectRefs nested inside])."""
        if not args and not kwargs:
            return EMPTY_ARGS_BLOB, (), ()
        deps: list = []
        if _has_top_level_ref(args, kwargs):
            args = [_slot(a, deps) for a in args]
            kwargs = {k: _slot(v, deps) for k, v in kwargs.items()} if kwargs else kwargs
        try:
            blob, contained = serialization.serialize_inline((args, kwargs))
        except SerializationError:
            _raise_naming_culprit(args, kwargs, function_name)
            raise
        if len(blob) > INLINE_THRESHOLD:
            args = [self._put_if_large(a, deps) for a in args]
            kwargs = {k: self._put_if_large(v, deps) for k, v in kwargs.items()} if kwargs else kwargs
            blob, contained = serialization.serialize_inline((args, kwargs))
        return blob, deps, contained

    def _hold_nested(self, contained) -> list:
        """Refs nested in a task's arguments (lock held) count as used by the
        task until its reply, by which time the worker is counted by their
        owners if it kept them (ownership.py, rule 1)."""
        nested = []
        add_task_ref = self.refs.add_task_ref
        entry_for_ref = self.refs.entry_for_ref
        for ref in contained:
            add_task_ref(entry_for_ref(ref._id, ref._owner))
            nested.append(ref._id)
        return nested

    def _put_if_large(self, value, deps):
        if isinstance(value, ArgSlot):
            return value
        blob, _ = serialization.serialize_inline(value)
        if len(blob) <= INLINE_THRESHOLD:
            return value
        return _slot(self.put(value), deps)

    def _dep_entries(self, deps):
        entry_for_ref = self.refs.entry_for_ref
        return [(ref._id, entry_for_ref(ref._id, ref._owner)) for ref in deps]

    # ------------------------------------------------------- normal tasks ---
    def submit_task(self, function_id: bytes, function_name: str, args, kwargs, num_returns: int,
                    resources_key: tuple, max_retries: int, retry_exceptions,
                    task_options: dict | None = None):
        if num_returns == DYNAMIC:
            return dynamic_result(self, self.submit_task(   # one ref, as for streaming
                function_id, function_name, args, kwargs, STREAMING, resources_key, max_retries,
                retry_exceptions, task_options))
        args_blob, deps, contained = self.encode_args(args, kwargs, function_name)
        streaming = num_returns == STREAMING
        if streaming:   # one return: the completion record (streaming_exec.py)
            num_returns, task_options = 1, dict(task_options or (), generator=True)
        self.loop.acquire()
        try:
            nested = self._hold_nested(contained) if contained else ()
            ctx = self.task_context()
            ctx.children += 1
            task_id = ids.child_task_id(ctx.task_id, ctx.children)
            return_ids = [task_id + (i + 1).to_bytes(4, "little") for i in range(num_returns)]
            add_owned = self.refs.add_owned
            for object_id in return_ids:
                add_owned(object_id, self.address)
            spec = TaskSpec(task_id, ctx.task_id[12:16], NORMAL_TASK, function_id, function_name,
                            args_blob, None, num_returns, self.worker_id, self.endpoint, None, None,
                            0, task_options, ctx.task_id)
            stream = self.generator_streams.open(task_id, task_options) if streaming else None
            self.task_events.submitted(task_id, function_name, NORMAL_TASK_TYPE, spec.job_id,
                                       ctx.task_id)
            self.tasks.submit(PendingTask(spec, return_ids, self._dep_entries(deps), max_retries,
                                          retry_exceptions, resources_key, nested))
        finally:
            self.loop.release()
        address = self.address
        refs = [ObjectRef(object_id, address, _count=False) for object_id in return_ids]
        return ObjectRefGenerator(self, task_id, stream, refs[0]) if streaming else refs

    # -------------------------------------------------------- actor tasks ---
    def submit_actor_task(self, actor_id: bytes, method_name: str, args, kwargs, num_returns: int,
                          max_task_retries: int = 0, handle_ref=None, max_pending_calls: int = -1,
                          options=None, retry_exceptions=False):
        if num_returns == DYNAMIC:
            return dynamic_result(self, self.submit_actor_task(
                actor_id, method_name, args, kwargs, STREAMING, max_task_retries, handle_ref,
                max_pending_calls, options, retry_exceptions))
        args_blob, deps, contained = self.encode_args(args, kwargs, method_name)
        streaming = num_returns == STREAMING
        if streaming:
            num_returns = 1
            options = dict(options or (), **_GENERATOR_OPTIONS)
        self.loop.acquire()
        try:
            if max_pending_calls > 0:
                st = self.actors.state_of(actor_id)
                if len(st.queue) + len(st.in_flight) >= max_pending_calls:
                    raise exceptions.PendingCallsLimitExceeded(
                        f"The task {method_name} could not be submitted to Actor({actor_id.hex()}) "
                        f"because more than {max_pending_calls} tasks are queued on the actor. "
                        f"This limit can be adjusted with the `max_pending_calls` actor option.")
            nested = self._hold_nested(contained) if contained else ()
            ctx = self.task_context()
            ctx.children += 1
            task_id = ids.child_task_id(ctx.task_id, ctx.children)
            return_ids = [task_id + (i + 1).to_bytes(4, "little") for i in range(num_returns)]
            add_owned = self.refs.add_owned
            for object_id in return_ids:
                add_owned(object_id, self.address)
            st = self.actors.state_of(actor_id)
            st.seq += 1
            spec = TaskSpec(task_id, ctx.task_id[12:16], ACTOR_TASK, b"", method_name, args_blob,
                            None, num_returns, self.worker_id, self.endpoint, actor_id, method_name,
                            st.seq, options, ctx.task_id)
            stream = self.generator_streams.open(task_id, options) if streaming else None
            self.task_events.submitted(task_id, method_name, ACTOR_TASK_TYPE, spec.job_id,
                                       ctx.task_id, actor_id)
            self.actors.submit(ActorCall(spec, return_ids, self._dep_entries(deps), max_task_retries,
                                         nested, handle_ref,
                                         retry_exceptions if not streaming else False))
        finally:
            self.loop.release()
        address = self.address
        refs = [ObjectRef(object_id, address, _count=False) for object_id in return_ids]
        return ObjectRefGenerator(self, task_id, stream, refs[0]) if streaming else refs

    def build_actor_creation_spec(self, actor_id: bytes, class_id: bytes, class_name: str,
                                  args, kwargs, options: dict) -> tuple:
        """(creation spec with arguments already resolved, refs to hold while
        the actor may still read them: see ActorSubmitter.hold_for_creation)."""
        args_blob, deps, contained = self.encode_args(args, kwargs, class_name)
        resolved = None
        if deps:
            self.get(deps)  # raises the dependency's error if it failed
            from .task_submitter import resolve_args
            resolved, _ = resolve_args(self._dep_entries(deps))
        self.loop.acquire()
        try:
            ctx = self.task_context()
            ctx.children += 1
            task_id = ids.child_task_id(ctx.task_id, ctx.children)
        finally:
            self.loop.release()
        spec = TaskSpec(task_id, ctx.task_id[12:16], ACTOR_CREATION_TASK, class_id, class_name,
                        args_blob, resolved, 1, self.worker_id, self.endpoint, actor_id, None, 0,
                        options, ctx.task_id)
        return spec, list(deps) + list(contained)


def _has_top_level_ref(args, kwargs) -> bool:
    for a in args:
        if type(a) is ObjectRef:
            return True
    if kwargs:
        for v in kwargs.values():
            if type(v) is ObjectRef:
                return True
    return False


def _slot(value, deps):
    if type(value) is ObjectRef:
        deps.append(value)
        return ArgSlot(len(deps) - 1)
    return value


def _raise_naming_culprit(args, kwargs, function_name):
    for position, value in enumerate(args):
        try:
            serialization.serialize_inline(value)
        except SerializationError as exc:
            raise SerializationError(
                f"Could not serialize argument {position} (type {type(value).__name__}) of "
                f"'{function_name}': {exc.__cause__ or exc}") from exc
    for name, value in (kwargs or {}).items():
        try:
            serialization.serialize_inline(value)
        except SerializationError as exc:
            raise SerializationError(
                f"Could not serialize keyword argument '{name}' (type {type(value).__name__}) "
                f"of '{function_name}': {exc.__cause__ or exc}") from exc
