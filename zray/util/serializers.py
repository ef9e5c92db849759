"""Ray's custom serializers (ray.util.register_serializer): pickle values of
a class through ``serializer(obj)`` and rebuild them with
``deserializer(data)``, for types that do not pickle or pickle badly.

Registered with copyreg, so the C pickler and cloudpickle both use it; the
deserializer travels with each value (by value when it is not importable),
so only the sending process needs the registration, as in Ray."""
from __future__ import annotations

import copyreg
from typing import Callable


def register_serializer(cls: type, *, serializer: Callable, deserializer: Callable) -> None:
    if not isinstance(cls, type):
        raise TypeError(f"register_serializer needs a class, got {cls!r}")
    if not callable(serializer) or not callable(deserializer):
        raise TypeError("serializer and deserializer must be callables")

    def reduce(obj):
        return deserializer, (serializer(obj),)
    copyreg.pickle(cls, reduce)


def deregister_serializer(cls: type) -> None:
    copyreg.dispatch_table.pop(cls, None)
