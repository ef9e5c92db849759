"""``@zray.remote`` on a class: ActorClass, ActorHandle, ActorMethod,
``zray.method`` and ``exit_actor``."""
from __future__ import annotations

import inspect

from . import exceptions, ids
from . import options as opts
from . import runtime_env, scheduling
from .core import process_state
from .core.object_ref import ObjectRef
from .sockets.messages import GcsMethod

ACTOR_META_NS = "actor_meta"
# Methods every actor answers (Ray's; run by executor_async.actor_method).
_BUILTIN_METHODS = ("__ray_ready__", "__ray_terminate__")


def method(*args, **kwargs):
    """``@zray.method(num_returns=2)`` on an actor method."""
    if args and callable(args[0]) and not kwargs:
        return args[0]
    opts.validate(kwargs, opts.METHOD_OPTIONS, "actor methods")

    def decorate(fn):
        fn.__zray_method_options__ = kwargs
        return fn
    return decorate


def exit_actor():
    """Exit the current actor process after this call (pending calls fail)."""
    worker = process_state.worker
    if worker is None or worker.actor_id is None:
        raise TypeError("exit_actor API is called on a non-actor worker.")
    executor = worker.executor
    executor.exit_requested = True   # it leaves even if the exception below is caught
    ctx = process_state.current_task.get()
    executor.exit_requested_by = ctx.task_id if ctx is not None else None   # (which call)
    if executor._async_loop is not None:
        # An async actor (its __init__ too): Ray's AsyncioActorExit, since a
        # SystemExit would stop the event loop's thread instead.
        raise exceptions.AsyncioActorExit()
    from .core.executor_async import ActorExit
    raise ActorExit()


def _constructor_signature(cls):
    if cls.__init__ is object.__init__:
        return inspect.Signature()
    try:
        signature = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return None
    params = list(signature.parameters.values())[1:]   # drop self
    return signature.replace(parameters=params)


def _class_meta(cls) -> dict:
    methods = {}
    groups = {}      # method name -> concurrency group declared with zray.method
    signatures = {}  # method name -> _method_parameters
    decorators = {}  # method name -> its __ray_invocation_decorator__ (Ray's caller-side hook)
    retries = {}     # method name -> (max_task_retries, retry_exceptions) from zray.method
    is_async = False
    for name, member in inspect.getmembers(cls):
        if not callable(member) or (name.startswith("__") and name != "__call__"):
            continue
        if inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member):
            is_async = True
        options = getattr(member, "__zray_method_options__", {})
        streams = inspect.isgeneratorfunction(member) or inspect.isasyncgenfunction(member)
        methods[name] = options.get("num_returns", "streaming" if streams else 1)
        if options.get("concurrency_group"):
            groups[name] = options["concurrency_group"]
        params = _method_parameters(cls, name, member)
        if params is not None:
            signatures[name] = params
        decorator = getattr(member, "__ray_invocation_decorator__", None)
        if decorator is not None:
            decorators[name] = decorator
        if "retry_exceptions" in options or "max_task_retries" in options:
            retries[name] = (options.get("max_task_retries"), options.get("retry_exceptions"))
    meta = {"class_name": cls.__name__, "methods": methods, "is_async": is_async,
            "method_groups": groups, "signatures": signatures}
    if decorators:
        meta["invocation_decorators"] = decorators
    if retries:
        meta["method_retries"] = retries
    return meta


def _method_parameters(cls, name: str, member):
    """((name, kind, has_default), ...) of the method's parameters after self,
    plain data so that handles carry it anywhere; None if it has no signature."""
    try:
        signature = inspect.signature(member)
    except (TypeError, ValueError):
        return None
    params = list(signature.parameters.values())
    if inspect.isfunction(member) and not isinstance(inspect.getattr_static(cls, name, None),
                                                     staticmethod):
        params = params[1:]    # self (a classmethod comes bound: no cls here)
    return tuple((p.name, int(p.kind), p.default is not inspect.Parameter.empty) for p in params)


class _ArgumentCheck:
    """Ray checks an actor call's arguments against the method's signature at
    .remote(), like a task's.  Methods taking exactly n positional arguments
    (the common case) are checked by counting; the rest by Signature.bind."""
    __slots__ = ("_simple_count", "_params", "_signature", "_where")

    def __init__(self, params: tuple, where: str):
        self._params = params
        self._where = where
        self._signature = None
        simple = all(kind == inspect.Parameter.POSITIONAL_OR_KEYWORD and not has_default
                     for _, kind, has_default in params)
        self._simple_count = len(params) if simple else -1

    def __call__(self, args, kwargs) -> None:
        if not kwargs and len(args) == self._simple_count:
            return
        if self._signature is None:
            self._signature = inspect.Signature([
                inspect.Parameter(name, inspect._ParameterKind(kind),
                                  default=None if has_default else inspect.Parameter.empty)
                for name, kind, has_default in self._params])
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{exc} (calling '{self._where}.remote()')") from None


class ActorClassInheritanceException(TypeError):
    """A class was defined with an actor class as a base (Ray refuses that too)."""


class ActorClass:
    def __init__(self, cls, options: dict):
        self._cls = cls
        self._options = opts.validate(dict(options), opts.ACTOR_OPTIONS, "actors")
        self._meta = _class_meta(cls)
        self._init_signature = _constructor_signature(cls)
        self._exported = {}
        self.__name__ = cls.__name__
        self.__doc__ = cls.__doc__

    def __call__(self, *args, **kwargs):
        name = self._cls.__name__
        raise TypeError(f"Actors cannot be instantiated directly. Instead of '{name}()', "
                        f"use '{name}.remote()'.")

    def __getattr__(self, name):
        # The user class's attributes (class constants, static helpers) read
        # through the actor class, as in Ray, whose actor class derives from it.
        if name.startswith("__") or name in ("_cls", "_options", "_meta"):
            raise AttributeError(name)
        return getattr(self._cls, name)

    def __dir__(self):
        return sorted(set(object.__dir__(self)) | set(dir(self._cls)))

    def __mro_entries__(self, bases):
        raise ActorClassInheritanceException(
            f"Attempted to define a subclass of actor class '{self._cls.__name__}'. Inheriting "
            f"from actor classes is not currently supported. You can instead inherit from a "
            f"non-actor base class and make the derived class an actor class (with @zray.remote).")

    def remote(self, *args, **kwargs):
        return self._submit(args, kwargs, self._options)

    def _remote(self, args=None, kwargs=None, **options):
        """Ray's lower-level create: arguments as a list and a dict, options as keywords."""
        if options:
            return self.options(**options).remote(*(args or ()), **(kwargs or {}))
        return self._submit(tuple(args or ()), dict(kwargs or {}), self._options)

    def options(self, **options):
        opts.validate(options, opts.ACTOR_OPTIONS, "actors")
        merged = {**self._options, **options}
        parent = self

        class ActorClassWithOptions:
            def remote(self, *args, **kwargs):
                return parent._submit(args, kwargs, merged)

        return ActorClassWithOptions()

    def _submit(self, args, kwargs, options):
        from .api import _auto_init
        from .remote_function import check_arguments
        check_arguments(self._init_signature, self._cls.__name__, args, kwargs)
        cw = _auto_init()
        class_id = self._exported.get(id(cw))
        if class_id is None:
            class_id = cw.functions.export(self._cls)
            self._exported = {id(cw): class_id}
        meta = self._meta
        actor_id = ids.random_unique_id()
        name = options.get("name")
        if name == "":
            raise ValueError("Actor name cannot be an empty string.")
        if options.get("namespace") == "":
            raise ValueError("Actor namespace cannot be an empty string.")
        namespace = options.get("namespace") or cw.current_namespace()
        detached = options.get("lifetime") == "detached"
        shape = opts.actor_resource_shape(options)
        placement = scheduling.resolve(cw, options, shape, meta["class_name"], is_actor=True)
        env = runtime_env.materialize(runtime_env.merge(
            cw.runtime_env, runtime_env.normalize(options.get("runtime_env"))), cw.session_dir)
        groups = opts.concurrency_groups(options.get("concurrency_groups"), meta, meta["class_name"])
        creation_options = {"max_concurrency": options.get("max_concurrency"),
                            "is_async": meta["is_async"], "resources": shape,
                            "placement_group": placement.group, "concurrency_groups": groups,
                            "name": name}
        spec, creation_refs = cw.build_actor_creation_spec(actor_id, class_id, meta["class_name"], args, kwargs,
                                            creation_options)
        handle_meta = dict(meta, max_task_retries=options.get("max_task_retries", 0) or 0,
                           max_pending_calls=options.get("max_pending_calls", -1),
                           concurrency_groups=groups)
        cw.gcs_call(GcsMethod.KV_PUT, ACTOR_META_NS, actor_id, _dumps(handle_meta), True)
        if placement.group is None:   # a group's resources appear once it is placed
            _warn_if_infeasible(cw, shape, meta["class_name"])
        reply = _create_in_gcs(cw, {
            "actor_id": actor_id, "job_id": cw.job_id, "name": name, "namespace": namespace,
            "detached": detached, "get_if_exists": bool(options.get("get_if_exists")),
            "resources": placement.demand, "node_affinity": placement.node_affinity,
            "creation_task": tuple(spec), "class_name": meta["class_name"], "runtime_env": env,
            "owner_id": cw.worker_id, "max_restarts": options.get("max_restarts", 0) or 0})
        if reply.get("existing"):
            return get_handle(cw, reply["actor_id"])
        handle_ref = _own_new_actor(cw, actor_id, spec, detached, creation_refs,
                                    bool(options.get("max_restarts")))
        return ActorHandle(actor_id, handle_meta, handle_ref)


def _create_in_gcs(cw, record: dict) -> dict:
    """Register the actor with the GCS (which places it); a taken name is
    Ray's ValueError."""
    from .core.core_worker import GcsError
    from .gcs.errors import GcsErrorCode
    try:
        return cw.gcs_call(GcsMethod.CREATE_ACTOR, record)
    except GcsError as exc:
        if exc.code == GcsErrorCode.ACTOR_NAME_TAKEN:
            from .exceptions import ActorAlreadyExistsError
            name, namespace = record["name"], record["namespace"]
            raise ActorAlreadyExistsError(f"The name {name} (namespace={namespace}) is already taken. "
                             f"Please use a different name or get the existing one using "
                             f"zray.get_actor('{name}', namespace='{namespace}')") from None
        raise


def _own_new_actor(cw, actor_id: bytes, spec, detached: bool, creation_refs, restartable: bool):
    """The creator's bookkeeping for a new actor; the ref that counts its
    handles (None for a detached actor, which lives until killed)."""
    # Non-detached actors live while any handle does (ids.actor_handle_object_id).
    handle_object = None if detached else ids.actor_handle_object_id(spec.task_id)
    cw.loop.acquire()
    try:
        cw.actors.register_owned(actor_id, detached)
        if handle_object is not None:
            cw.refs.add_actor_handle(handle_object, actor_id, cw.address)
        if creation_refs:
            cw.actors.hold_for_creation(actor_id, creation_refs, restartable)
    finally:
        cw.loop.release()
    return None if handle_object is None else ObjectRef(handle_object, cw.address, _count=False)


_feasible_shapes: set = set()


def _warn_if_infeasible(cw, shape: dict, class_name: str) -> None:
    """Ray warns on the driver when no node could ever host an actor; the
    creation stays pending (a node that fits may join)."""
    if not shape:
        return
    key = (id(cw), tuple(sorted(shape.items())))
    if key in _feasible_shapes:
        return
    nodes = cw.gcs_call(GcsMethod.GET_ALL_NODES)
    for node in nodes:
        total = node.get("resources_total", {})
        if node.get("state") == "ALIVE" and all(total.get(k, 0) >= v for k, v in shape.items() if v):
            _feasible_shapes.add(key)
            return
    import sys
    message = (f"zray warning: the actor {class_name} needs {shape}, which no node in the cluster "
               f"can provide; it stays pending until a node that fits joins.")
    print(message, file=sys.stderr)


def _dumps(meta: dict) -> bytes:
    if "invocation_decorators" in meta or "method_retries" in meta:   # user code: by value
        import cloudpickle
        return cloudpickle.dumps(meta, 5)
    import pickle
    return pickle.dumps(meta, 5)


def get_handle(cw, actor_id: bytes):
    import pickle
    data = cw.gcs_call(GcsMethod.KV_GET, ACTOR_META_NS, actor_id)
    meta = pickle.loads(data) if data else {"class_name": "Actor", "methods": {}, "is_async": False}
    # Uncounted, as in Ray: a handle looked up by name (or current_actor)
    # does not keep a non-detached actor alive once its creator's handles
    # and the ones passed on from them are gone.
    return ActorHandle(actor_id, meta)


def _rebuild_handle(actor_id, meta, handle_ref=None):
    return ActorHandle(actor_id, meta, handle_ref)


class ActorHandle:
    """A reference to an actor.  A non-detached actor's handles are counted
    through ``_handle_ref``, an ObjectRef of the actor's handle object that
    every copy carries, so the object borrowing protocol (ownership.py)
    tells the creator when the last handle anywhere is gone."""

    def __init__(self, actor_id: bytes, meta: dict, handle_ref=None):
        self._actor_id = actor_id
        self._meta = meta
        self._handle_ref = handle_ref
        # Method name -> (num_returns, argument check).  Not ActorMethod
        # objects: those point back at the handle, and that cycle would keep
        # it (and the actor) alive until the cyclic GC runs.
        self._methods = {}

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__") and name not in _BUILTIN_METHODS:
            raise AttributeError(name)
        methods = self.__dict__.get("_methods")
        if methods is None:
            raise AttributeError(name)
        known = methods.get(name)
        if known is None:
            meta = self._meta
            declared = meta["methods"]
            if declared and name not in declared and name not in _BUILTIN_METHODS:
                raise AttributeError(f"'{meta['class_name']}' actor has no method '{name}'")
            params = meta.get("signatures", {}).get(name)
            check = None if params is None else _ArgumentCheck(
                params, f"{meta['class_name']}.{name}")
            # Per-method options, looked up once per handle, not per call.
            known = methods[name] = (declared.get(name, 1), check,
                                     meta.get("invocation_decorators", {}).get(name),
                                     meta.get("method_retries", {}).get(name))
        return ActorMethod(self, name, *known)

    def __reduce__(self):
        return _rebuild_handle, (self._actor_id, self._meta, self._handle_ref)

    def __repr__(self):
        return f"Actor({self._meta['class_name']}, {self._actor_id.hex()})"

    def __hash__(self):
        return hash(self._actor_id)

    def __eq__(self, other):
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    @property
    def _ray_actor_id(self):
        return ids.ActorID(self._actor_id)


class ActorMethod:
    __slots__ = ("_handle", "_name", "_num_returns", "_check", "_decorator", "_declared_retries")

    def __init__(self, handle: ActorHandle, name: str, num_returns: int, check=None,
                 decorator=None, declared_retries=None):
        self._handle = handle
        self._name = name
        self._num_returns = num_returns
        self._check = check
        self._decorator = decorator                # its __ray_invocation_decorator__
        self._declared_retries = declared_retries  # (max_task_retries, retry_exceptions)

    def __call__(self, *args, **kwargs):
        raise TypeError(f"Actor methods cannot be called directly. Instead of running "
                        f"'object.{self._name}()', try 'object.{self._name}.remote()'.")

    def remote(self, *args, **kwargs):
        return self._submit(args, kwargs, self._num_returns, None)

    def _remote(self, args=None, kwargs=None, **options):
        """Ray's lower-level call: arguments as a list and a dict, options as keywords."""
        if options:
            return self.options(**options).remote(*(args or ()), **(kwargs or {}))
        return self._submit(tuple(args or ()), dict(kwargs or {}), self._num_returns, None)

    def options(self, **options):
        opts.validate(options, opts.METHOD_OPTIONS, "actor methods")
        num_returns = options.get("num_returns", self._num_returns)
        max_task_retries = options.get("max_task_retries")
        retry_exceptions = options.get("retry_exceptions")
        group = options.get("concurrency_group")
        backpressure = opts.generator_backpressure(options)
        parent = self

        class MethodWithOptions:
            def remote(self, *args, **kwargs):
                return parent._submit(args, kwargs, num_returns, max_task_retries, group,
                                      backpressure, retry_exceptions)

        return MethodWithOptions()

    def _submit(self, args, kwargs, num_returns, max_task_retries, group=None, backpressure=None,
                retry_exceptions=None):
        if self._decorator is not None:
            # Ray's __ray_invocation_decorator__: it wraps the caller's side of
            # the call, taking and returning (args, kwargs) -> whatever it likes.
            def invocation(args, kwargs):
                return self._submit_now(tuple(args), dict(kwargs), num_returns, max_task_retries,
                                        group, backpressure, retry_exceptions)
            return self._decorator(invocation)(args, kwargs)
        return self._submit_now(args, kwargs, num_returns, max_task_retries, group, backpressure,
                                retry_exceptions)

    def _submit_now(self, args, kwargs, num_returns, max_task_retries, group, backpressure,
                    retry_exceptions):
        if self._check is not None:
            self._check(args, kwargs)
        cw = process_state.require_worker()
        handle = self._handle
        meta = handle._meta
        if self._declared_retries is not None:
            # Ray's precedence: .options() > @zray.method > the actor's max_task_retries.
            declared_retries, declared_exceptions = self._declared_retries
            if max_task_retries is None:
                max_task_retries = declared_retries
            if retry_exceptions is None:
                retry_exceptions = declared_exceptions
        if max_task_retries is None:
            max_task_retries = meta.get("max_task_retries", 0)
        call_options = None
        if group is not None or meta.get("method_groups"):
            group = group or meta["method_groups"].get(self._name)
            if group is not None:
                call_options = {"concurrency_group": opts.check_concurrency_group(
                    group, meta.get("concurrency_groups") or {}, meta["class_name"], self._name)}
        if backpressure is not None and num_returns == "streaming":
            call_options = dict(call_options or (), generator_backpressure=backpressure)
        refs = cw.submit_actor_task(handle._actor_id, self._name, args, kwargs, num_returns,
                                    max_task_retries, handle._handle_ref,
                                    meta.get("max_pending_calls", -1), call_options,
                                    retry_exceptions or False)
        if num_returns == 1:
            return refs[0]
        if num_returns == 0:
            return None
        return refs
