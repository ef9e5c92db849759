"""The "init to first result" workload: cold-start latency in a fresh process.

Owns both sides: `time_init_to_first_result()` (called by the runner) starts
`python -m <this package>.fresh_init` once per sample; that probe imports the
module (untimed), then times `rt.init(**kwargs)` + `rt.get(f.remote())` and
prints the seconds as one JSON line. A fresh interpreter is needed because
init can only happen once per process and must not reuse warm state.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Tuple

from .procs import ProcessTree

_RESULT_PREFIX = "ZRAY_BENCH_INIT_SECONDS "


def time_init_to_first_result(module_name: str, init_kwargs: dict, samples: int, timeout_s: float) -> Tuple[float, float]:
    """Return (mean, stddev) seconds over `samples` fresh processes."""
    seconds = [_one_sample(module_name, init_kwargs, timeout_s) for _ in range(max(1, samples))]
    stddev = statistics.pstdev(seconds) if len(seconds) > 1 else 0.0
    return statistics.fmean(seconds), stddev


def _one_sample(module_name: str, init_kwargs: dict, timeout_s: float) -> float:
    command = [sys.executable, "-m", f"{__package__}.fresh_init",
               "--module", module_name, "--init-kwargs", json.dumps(init_kwargs)]
    # Own session so a timeout can take down the probe *and* whatever daemons
    # its init started (they stay in the probe's process group).
    tree = ProcessTree.spawn(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    probe = tree.process
    try:
        out, err = probe.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        tree.stop(graceful=False)
        raise TimeoutError(f"init probe took longer than {timeout_s:.0f}s")
    except BaseException:  # e.g. SIGTERM from the parent: take its daemons down too
        tree.stop(graceful=False)
        raise
    # A clean probe has shut its runtime down; this only sweeps leftovers.
    tree.stop(graceful=False)
    for line in out.splitlines():
        if line.startswith(_RESULT_PREFIX):
            return float(line[len(_RESULT_PREFIX):])
    tail = "\n".join(err.strip().splitlines()[-5:])
    raise RuntimeError(f"init probe exited with code {probe.returncode} and no result: {tail}")


def probe_main() -> None:
    parser = argparse.ArgumentParser(description="time init + first task result (internal)")
    parser.add_argument("--module", required=True)
    parser.add_argument("--init-kwargs", default="{}")
    args = parser.parse_args()

    import importlib
    rt = importlib.import_module(args.module)
    init_kwargs = json.loads(args.init_kwargs)

    def first():
        return 1

    first = rt.remote(first)  # defining before init is valid Ray API and not timed

    start = time.perf_counter()
    rt.init(**init_kwargs)
    result = rt.get(first.remote())
    elapsed = time.perf_counter() - start
    try:
        if result != 1:
            raise RuntimeError(f"first task returned {result!r}, expected 1")
        print(_RESULT_PREFIX + repr(elapsed), flush=True)
    finally:
        rt.shutdown()


if __name__ == "__main__":
    probe_main()
