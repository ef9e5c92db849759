"""zray_bench: the `zray bench` harness.

Runs the workloads of Ray's `ray microbenchmark` (plus "init to first result")
against any Ray-API-compatible module -- zray itself, or real Ray for
comparison -- each module in its own child process, and reports ops/s side by
side.

Layout:
    timing.py     -- the timeit helper (warmup + timed rounds -> mean/stddev).
    workloads.py  -- module-agnostic workload definitions (take `rt`, `timeit`).
    runner.py     -- runs every workload for ONE module in the current process;
                     `python -m zray_bench.runner` is the per-module child.
    cli.py        -- `run_bench()`: spawns one child per module, shows live
                     progress, prints the comparison table, writes JSON.

This package is installed as `zray_bench` (setup.cfg maps it from `bench/`),
so modules here use relative imports only.
"""
