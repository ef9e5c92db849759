"""The store's bulk copy (zray/store/fastcopy.py): exact bytes, its fallback, its guard rails."""

import os
import subprocess
import sys

import numpy as np
import pytest

from zray.store import fastcopy


def _erms() -> bool:
    return "erms" in fastcopy._cpu_flags()


def test_rep_movsb_is_used_where_the_cpu_has_erms():
    import platform
    expected = _erms() and platform.machine() in ("x86_64", "AMD64") and os.environ.get("ZRAY_REP_MOVSB", "1") != "0"
    assert fastcopy.uses_rep_movsb() == expected


@pytest.mark.parametrize("length", [0, 1, 63, 4096 + 5, (3 << 20) + 17])
@pytest.mark.parametrize("shift", [0, 1, 16])
def test_copy_array_copies_exactly_those_bytes(length, shift):
    rng = np.random.default_rng(length + shift)
    source = rng.integers(0, 256, length + shift, dtype=np.uint8)[shift:]
    dest = np.full(length + 2, 7, dtype=np.uint8)
    fastcopy.copy_array(np, dest[1:-1], source)
    assert np.array_equal(dest[1:-1], source)
    assert dest[0] == 7 and dest[-1] == 7          # nothing written outside the range


def test_copy_array_rejects_mismatched_or_read_only_destinations():
    if not fastcopy.uses_rep_movsb():
        pytest.skip("numpy's copyto checks these itself on this machine (no rep movsb)")
    source = np.arange(10, dtype=np.uint8)
    with pytest.raises(ValueError, match="9 destination bytes for 10 source bytes"):
        fastcopy.copy_array(np, np.zeros(9, dtype=np.uint8), source)
    read_only = np.zeros(10, dtype=np.uint8)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        fastcopy.copy_array(np, read_only, source)


def test_the_environment_switch_falls_back_to_numpy():
    code = ("import numpy as np; from zray.store import fastcopy; "
            "a = np.arange(100, dtype=np.uint8); b = np.zeros(100, dtype=np.uint8); "
            "fastcopy.copy_array(np, b, a); assert (a == b).all(); print(fastcopy.uses_rep_movsb())")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "ZRAY_REP_MOVSB": "0"},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_the_code_page_is_not_writable_and_executable_at_once():
    if not fastcopy.uses_rep_movsb():
        pytest.skip("no rep movsb routine on this machine")
    import ctypes
    address = ctypes.addressof(ctypes.c_char.from_buffer(fastcopy._code_page))
    with open("/proc/self/maps") as maps:
        for line in maps:
            span, perms = line.split()[:2]
            start, end = (int(x, 16) for x in span.split("-"))
            if start <= address < end:
                assert perms.startswith("r-x"), line
                return
    pytest.fail("the code page is not in /proc/self/maps")
