"""Runs every selected workload for ONE runtime module in the current process.

`run_module()` imports the module, measures "init to first result" in fresh
processes, initialises the module once with `init_kwargs()`, runs each
in-process workload, and shuts it down. A workload that raises becomes an
error row; it never aborts the run.

`python -m zray_bench.runner --module ray --quick --json out.json` is the
per-module child process `cli.py` starts. Progress events are JSON objects;
with `--progress-fd` they are written one per line to that pipe (so the
module's own log noise on stdout/stderr cannot corrupt them), otherwise they
are printed human-readably to stderr.
"""

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import time
import traceback
from typing import Callable, List, Optional

from . import timing
from .report import summarize_error
from .fresh_init import time_init_to_first_result
from .workloads import Workload, select_workloads

# Per fresh-process init sample; generous because cold starts can be slow.
INIT_PROBE_TIMEOUT_S = 120.0


def init_kwargs() -> dict:
    """Arguments for `rt.init()`, identical for zray and ray so runs are comparable.

    Only kwargs zray promises to accept. The 2 GiB store holds the 800 MiB
    "put gigabytes" object with room to spare; logging at WARNING keeps Ray's
    startup banner out of the output.
    """
    return {
        "num_cpus": max(2, os.cpu_count() or 2),
        "object_store_memory": 2 * 1024**3,
        "resources": {"custom": 100},   # for Ray's placement-group workload's bundles
        "include_dashboard": False,
        "logging_level": logging.WARNING,
    }


def _row(workload: Workload, mean=None, sd=None, error=None, elapsed_s=0.0, trace=None) -> dict:
    return {
        "workload": workload.name,
        "unit": workload.unit,
        "higher_is_better": workload.higher_is_better,
        "mean": mean,
        "sd": sd,
        "error": error,
        "traceback": trace,  # full detail for the JSON report; displays use summarize_error()
        "elapsed_s": round(elapsed_s, 3),
    }


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _trace(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)[-30:])


def module_version(rt) -> str:
    return str(getattr(rt, "__version__", "unknown"))


def run_module(module_name: str, quick: bool, only: Optional[str],
               progress: Callable[[dict], None], start_at: int = 0) -> List[dict]:
    """Run the selected workloads for `module_name`; return one row dict each.

    `progress` receives events: {"event": "meta"|"phase"|"start"|"row", ...}.
    `start_at` skips that many selected workloads (used to resume after a hang).
    """
    config = timing.QUICK if quick else timing.FULL
    timeit = timing.make_timeit(config)
    selected = select_workloads(quick, only)
    total = len(selected)

    rt = importlib.import_module(module_name)
    progress({"event": "meta", "module": module_name, "version": module_version(rt),
              "total": total, "quick": quick})

    rows: List[dict] = []
    initialised = False
    init_error: Optional[str] = None
    try:
        for index, workload in enumerate(selected):
            if index < start_at:
                continue
            if not workload.fresh_process and not initialised and init_error is None:
                progress({"event": "phase", "what": f"{module_name}.init()"})
                try:
                    rt.init(**init_kwargs())
                    initialised = True
                except Exception as exc:
                    init_error = f"init failed: {_describe(exc)}"

            progress({"event": "start", "index": index + 1, "total": total, "workload": workload.name})
            started = time.perf_counter()
            if not workload.fresh_process and init_error is not None:
                row = _row(workload, error=init_error)
            else:
                try:
                    if workload.fresh_process:
                        mean, sd = time_init_to_first_result(
                            module_name, init_kwargs(), config.init_samples, INIT_PROBE_TIMEOUT_S)
                    else:
                        mean, sd = workload.run(rt, timeit)
                    row = _row(workload, mean, sd, elapsed_s=time.perf_counter() - started)
                except Exception as exc:
                    row = _row(workload, error=_describe(exc), trace=_trace(exc),
                               elapsed_s=time.perf_counter() - started)
            rows.append(row)
            progress({"event": "row", "index": index + 1, "total": total, "row": row})
    finally:
        if initialised:
            progress({"event": "phase", "what": f"{module_name}.shutdown()"})
            rt.shutdown()
    return rows


def _fd_progress(fd: int) -> Callable[[dict], None]:
    stream = os.fdopen(fd, "w", buffering=1)

    def progress(event: dict) -> None:
        stream.write(json.dumps(event) + "\n")
        stream.flush()

    return progress


def _stderr_progress(event: dict) -> None:
    kind = event["event"]
    if kind == "meta":
        print(f"[{event['module']} {event['version']}] {event['total']} workloads", file=sys.stderr)
    elif kind == "phase":
        print(f"  ... {event['what']}", file=sys.stderr)
    elif kind == "start":
        print(f"  {event['index']}/{event['total']} {event['workload']} ...", file=sys.stderr)
    elif kind == "row":
        print(f"     -> {format_result(event['row'])}", file=sys.stderr)
    sys.stderr.flush()


def format_result(row: dict) -> str:
    if row.get("error"):
        return f"ERROR {summarize_error(row['error'])}"
    return f"{row['mean']:.4g} +- {row['sd']:.2g} {row['unit']}"


def _exit_on_sigterm(signum, frame):
    # Turn SIGTERM into an exception so `finally: rt.shutdown()` still runs.
    raise SystemExit(128 + signum)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zray_bench.runner",
                                     description="Run zray bench workloads for one module.")
    parser.add_argument("--module", required=True, help="runtime module, e.g. zray or ray")
    parser.add_argument("--quick", action="store_true", help="short timing rounds")
    parser.add_argument("--only", default=None, help="substring filter on workload names")
    parser.add_argument("--json", dest="json_path", default=None, help="write rows to this file")
    parser.add_argument("--start-at", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--progress-fd", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    progress = _fd_progress(args.progress_fd) if args.progress_fd is not None else _stderr_progress
    version = None

    def recording_progress(event: dict) -> None:
        nonlocal version
        if event["event"] == "meta":
            version = event["version"]
        progress(event)

    try:
        rows = run_module(args.module, args.quick, args.only, recording_progress, args.start_at)
    except ImportError as exc:
        progress({"event": "fatal", "error": f"cannot import {args.module}: {exc}"})
        print(f"cannot import {args.module}: {exc}", file=sys.stderr)
        return 2

    if args.json_path:
        with open(args.json_path, "w") as out:
            json.dump({"module": args.module, "version": version, "quick": args.quick, "rows": rows}, out, indent=2)
    if args.progress_fd is None:
        for row in rows:
            print(f"{row['workload']}: {format_result(row)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
