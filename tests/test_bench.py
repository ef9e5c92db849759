"""`zray bench` end to end on one cheap workload (numbers are not asserted)."""
import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(180)


def _bench(*args):
    return subprocess.run([sys.executable, "-m", "zray.cli", "bench", "--quick", *args],
                          capture_output=True, text=True, timeout=170)


def test_bench_quick_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    run = _bench("--only", "single client tasks sync", "--json", str(out))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "single client tasks sync" in run.stdout
    data = json.loads(out.read_text())
    text = json.dumps(data)
    assert "single client tasks sync" in text and '"zray"' in text


def test_bench_compare_with_missing_module_still_reports_zray(tmp_path):
    run = _bench("--only", "single client get calls", "--compare", "no_such_runtime_xyz")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "single client get calls" in run.stdout
    assert "no_such_runtime_xyz" in run.stdout + run.stderr


def test_bench_placement_group_row_runs(tmp_path):
    out = tmp_path / "bench.json"
    run = _bench("--only", "placement group create/removal", "--json", str(out))
    assert run.returncode == 0, run.stdout + run.stderr
    rows = [row for row in json.loads(out.read_text())["modules"]["zray"]["rows"]
            if row["workload"] == "placement group create/removal"]
    assert rows and rows[0]["error"] is None and rows[0]["mean"] > 0, rows
