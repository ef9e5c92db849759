"""zray.util.inspect_serializability: names what inside a value will not pickle."""
from __future__ import annotations

import io
import threading

import zray


def test_a_picklable_value_passes():
    out = io.StringIO()
    assert zray.util.inspect_serializability({"a": [1, 2]}, print_file=out) == (True, set())
    assert "serializable" in out.getvalue()


def test_the_culprit_inside_a_closure_is_named():
    lock = threading.Lock()

    def uses_lock():
        return lock
    out = io.StringIO()
    ok, failures = zray.util.inspect_serializability(uses_lock, print_file=out)
    assert not ok
    assert [(f.name, f.obj) for f in failures] == [("lock", lock)]
    assert "FAIL serialization: lock" in out.getvalue()


def test_the_culprit_inside_an_object_and_a_list_is_named():
    class Holder:
        def __init__(self):
            self.fine = 1
            self.lock = threading.Lock()
    ok, failures = zray.util.inspect_serializability([1, Holder()], print_file=io.StringIO())
    assert not ok and {f.name for f in failures} == {"lock"}


def test_depth_limits_the_search():
    class Outer:
        def __init__(self):
            self.inner = {"deep": threading.Lock()}
    ok, failures = zray.util.inspect_serializability(Outer(), depth=1, print_file=io.StringIO())
    assert not ok and {f.name for f in failures} == {"inner"}
