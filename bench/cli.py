"""Entry point of `zray bench`: run_bench() and the live progress display.

Owns the user-facing flow: run the primary module's workloads (zray) in one
child process, then each compared module (e.g. ray) in its own child, show
live progress on stderr, print the comparison table on stdout and optionally
write a JSON report. Child supervision lives in child.py, formatting in
report.py.

`python -m zray_bench.cli [--quick] [--compare ray] [--json FILE] [--only TEXT]`
does the same from the command line (`--primary MODULE` is a hidden testing
aid: e.g. `--primary ray --compare ray` exercises the harness without zray).
"""

import argparse
import importlib.util
import sys
import time
from typing import Dict, List, Optional

from . import report
from .child import ModuleRun
from .runner import format_result, init_kwargs

# Every wait is bounded. "Stall" = no progress event at all (one workload, or
# one init probe, taking this long is treated as hung); "run" = one module.
STALL_TIMEOUT_S = {True: 180.0, False: 600.0}
RUN_TIMEOUT_S = {True: 1200.0, False: 3600.0}

INSTALL_HINT = "pip install .[bench]"


class ProgressDisplay:
    """Live progress on stderr: a rewritten status line on a TTY, plain lines otherwise."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.live = stream.isatty()
        self.status = ""
        self.status_since = time.monotonic()

    def __call__(self, module: str, event: dict) -> None:
        kind = event.get("event")
        if kind == "meta":
            self._line(f"[{module} {event.get('version')}] {event.get('total')} workloads")
        elif kind == "phase":
            self._set_status(f"[{module}] {event.get('what')}")
        elif kind == "start":
            self._set_status(f"[{module}] {event['index']}/{event['total']} {event['workload']}")
        elif kind == "row":
            row = event["row"]
            position = f"{event.get('index')}/{event.get('total')}"
            self._line(f"[{module}] {position:>5} {row['workload']}: {format_result(row)}")
        elif kind == "fatal":
            self._line(f"[{module}] cannot run: {event.get('error')}")
        elif kind == "strays":
            self._line(f"[{module}] warning: processes were still running after the child exited; killed them")
        elif kind == "tick" and self.live and self.status:
            self._draw()

    def message(self, text: str) -> None:
        self._line(text)

    def close(self) -> None:
        if self.live and self.status:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
        self.status = ""

    def _set_status(self, text: str) -> None:
        self.status, self.status_since = text, time.monotonic()
        if self.live:
            self._draw()
        else:
            self._write(f"{text} ...\n")

    def _draw(self) -> None:
        elapsed = time.monotonic() - self.status_since
        self._write(f"\r\x1b[K{self.status} ({elapsed:.0f}s)")

    def _line(self, text: str) -> None:
        # On a TTY, print the permanent line over the status line, then redraw it.
        if self.live:
            self._write(f"\r\x1b[K{text}\n")
            if self.status:
                self._draw()
        else:
            self._write(text + "\n")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _run_one(label: str, module: str, quick: bool, only: Optional[str],
             display: ProgressDisplay, runs: Dict[str, dict]) -> None:
    record = {"module": module, "version": None, "status": "running", "error": None,
              "rows": [], "elapsed_s": None}
    runs[label] = record
    module_run = ModuleRun(module, quick, only, lambda _module, event: display(label, event),
                           stall_timeout_s=STALL_TIMEOUT_S[quick], run_timeout_s=RUN_TIMEOUT_S[quick])
    started = time.monotonic()
    try:
        module_run.run()
    finally:
        # Keep partial results even when interrupted.
        record["rows"] = module_run.rows
        record["version"] = module_run.version
        record["elapsed_s"] = round(time.monotonic() - started, 1)
        record["error"] = module_run.fatal
        record["status"] = "failed" if module_run.fatal and not module_run.rows else "ok"


def run_bench(quick: bool, compare: List[str], json_path: Optional[str], only: Optional[str],
              primary: str = "zray") -> int:
    """Run the benchmark; return a process exit code.

    0: every primary workload ran; 1: some primary workload failed;
    2: the primary module could not run; 130: interrupted (Ctrl-C).
    """
    display = ProgressDisplay()
    runs: Dict[str, dict] = {}  # label -> record; label == module name unless it repeats
    # (label, module) in run order. The primary may also be compared (e.g.
    # --primary ray --compare ray while zray is not ready): that is a second,
    # separate child, labelled "ray#2".
    plan = [(primary, primary)]
    for module in dict.fromkeys(m for m in (compare or []) if m):
        plan.append((f"{module}#2" if module == primary else module, module))

    interrupted = False
    try:
        for label, module in plan:
            if not _installed(module):
                hint = "" if label == primary else f"; to compare against it run `{INSTALL_HINT}`"
                display.message(f"{module} is not installed{hint}")
                runs[label] = {"module": module, "version": None, "status": "not installed",
                               "error": f"{module} is not installed", "rows": [], "elapsed_s": None}
                continue
            _run_one(label, module, quick, only, display, runs)
    except KeyboardInterrupt:
        interrupted = True
        display.message("interrupted: child processes stopped; partial results below")
    finally:
        display.close()

    # The primary keeps its column even when it did not run; absent comparisons do not.
    table_runs = {label: run for label, run in runs.items()
                  if label == primary or run["status"] != "not installed"}
    if primary in runs and any(run["rows"] for run in table_runs.values()):
        print(report.format_table(primary, table_runs))
    for label, run in runs.items():
        if run["status"] == "not installed" and label != primary:
            print(f"\n{label} was not run: it is not installed. Run `{INSTALL_HINT}` to compare against it.")
        elif run["error"]:
            print(f"\n{label}: {run['error']}")
    if json_path:
        report.write_json(json_path, primary, runs, quick, only, init_kwargs())
        display.message(f"wrote {json_path}")

    if interrupted:
        return 130
    primary_run = runs.get(primary)
    if not primary_run or primary_run["status"] != "ok" or not primary_run["rows"]:
        return 2
    return 1 if any(row.get("error") for row in primary_run["rows"]) else 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="zray bench", description="Ray-microbenchmark workloads on zray.")
    parser.add_argument("--quick", action="store_true", help="short timing rounds, skip the optional multi-client workloads")
    parser.add_argument("--compare", action="append", default=[], metavar="MODULE",
                        help="also run on MODULE (e.g. ray); repeatable")
    parser.add_argument("--json", dest="json_path", default=None, metavar="FILE", help="write all results to FILE")
    parser.add_argument("--only", default=None, metavar="TEXT", help="run workloads whose name contains TEXT")
    parser.add_argument("--primary", default="zray", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return run_bench(args.quick, args.compare, args.json_path, args.only, primary=args.primary)


if __name__ == "__main__":
    sys.exit(main())
