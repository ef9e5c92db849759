"""``inspect_serializability``: find what inside a value cannot be pickled
(Ray's ``ray.util.inspect_serializability``), for the error zray raises
when a task argument, return value or remote function will not serialize."""
from __future__ import annotations

import inspect
import sys
from typing import Any, NamedTuple, Optional, Set, Tuple

import cloudpickle


class FailureTuple(NamedTuple):
    obj: Any
    name: str
    parent: Any

    def __repr__(self):
        return f"FailTuple({self.name} [obj={self.obj!r}, parent={self.parent!r}])"


def _pickles(obj) -> bool:
    try:
        cloudpickle.dumps(obj)
        return True
    except Exception:
        return False


def _members(obj):
    """(name, value) pairs worth inspecting inside ``obj``."""
    if inspect.isfunction(obj):
        closure = inspect.getclosurevars(obj)
        yield from closure.nonlocals.items()
        yield from closure.globals.items()
    elif isinstance(obj, (list, tuple, set, frozenset)):
        yield from ((f"[{i}]", v) for i, v in enumerate(obj))
    elif isinstance(obj, dict):
        yield from ((f"[{k!r}]", v) for k, v in obj.items())
    else:
        yield from (getattr(obj, "__dict__", None) or {}).items()


def inspect_serializability(base_obj: Any, name: Optional[str] = None, depth: int = 3,
                            print_file=None) -> Tuple[bool, Set[FailureTuple]]:
    """(True, set()) if ``base_obj`` pickles; otherwise (False, failures), the
    innermost members (up to ``depth`` levels down) that do not pickle
    themselves.  A report is printed to ``print_file`` (stdout by default)."""
    out = print_file or sys.stdout
    failures: Set[FailureTuple] = set()
    name = name or getattr(base_obj, "__name__", type(base_obj).__name__)

    def visit(obj, label, parent, level) -> None:
        indent = "    " * level
        if _pickles(obj):
            return
        print(f"{indent}!!! FAIL serialization: {label} ({type(obj).__name__})", file=out)
        if level >= depth:
            failures.add(_failure(obj, label, parent))
            return
        found_before = len(failures)
        for member_name, member in _members(obj):
            visit(member, member_name, obj, level + 1)
        if len(failures) == found_before:   # nothing inside fails alone: this is the culprit
            failures.add(_failure(obj, label, parent))

    visit(base_obj, name, None, 0)
    ok = not failures
    print(f"{'=' * 60}\nChecked {name}: {'serializable' if ok else 'NOT serializable'}"
          + ("".join(f"\n    {f}" for f in failures) if failures else ""), file=out)
    return ok, failures


def _failure(obj, label, parent) -> FailureTuple:
    try:
        hash(obj)
        hash(parent)
        return FailureTuple(obj, label, parent)
    except TypeError:   # unhashable members are reported by identity
        return FailureTuple(_Ident(obj), label, _Ident(parent))


class _Ident:
    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __repr__(self):
        return repr(self.obj)
