"""Results reporting for `zray bench`: the comparison table and the JSON file.

Owns how rows from several modules are lined up by workload name, how the
ratio is defined (always "> 1 means the primary module is better": primary /
other for throughputs, other / primary for times such as "init to first
result"), and the JSON layout.
"""

import datetime
import json
import os
import platform
import re
import sys
from typing import Dict, List, Optional


_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def summarize_error(error: str, width: int = 160) -> str:
    """One line for displays: remote errors carry a whole traceback in their text."""
    lines = [line.strip() for line in _ANSI_ESCAPE.sub("", error).splitlines() if line.strip()]
    if not lines:
        return "(no message)"
    text = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1]}"
    return text if len(text) <= width else text[: width - 3] + "..."


def ratio(primary_row: Optional[dict], other_row: Optional[dict]) -> Optional[float]:
    if not _ok(primary_row) or not _ok(other_row):
        return None
    if primary_row["higher_is_better"]:
        return primary_row["mean"] / other_row["mean"] if other_row["mean"] else None
    return other_row["mean"] / primary_row["mean"] if primary_row["mean"] else None


def _ok(row: Optional[dict]) -> bool:
    return bool(row) and not row.get("error") and row.get("mean") is not None


def _by_name(rows: List[dict]) -> Dict[str, dict]:
    return {row["workload"]: row for row in rows}


def comparison(primary: str, runs: Dict[str, dict]) -> List[dict]:
    """One entry per workload (primary's order first): each module's result and ratios."""
    order: List[str] = []
    for module in [primary] + [m for m in runs if m != primary]:
        for row in runs[module]["rows"]:
            if row["workload"] not in order:
                order.append(row["workload"])
    indexed = {module: _by_name(run["rows"]) for module, run in runs.items()}
    entries = []
    for name in order:
        any_row = next(indexed[m][name] for m in indexed if name in indexed[m])
        unit_row = next((indexed[m][name] for m in indexed if _ok(indexed[m].get(name))), any_row)
        entry = {"workload": name, "unit": unit_row.get("unit"),
                 "higher_is_better": unit_row.get("higher_is_better", True),
                 "results": {m: indexed[m].get(name) for m in runs}, "ratio": {}}
        for module in runs:
            if module != primary:
                entry["ratio"][module] = ratio(indexed[primary].get(name), indexed[module].get(name))
        entries.append(entry)
    return entries


def _format_value(row: Optional[dict]) -> str:
    if row is None:
        return "-"
    if row.get("error"):
        return "ERROR"
    mean, sd = row["mean"], row["sd"] or 0.0
    text = f"{mean:,.0f}" if abs(mean) >= 100 else f"{mean:.3g}"
    if mean:
        text += f" +-{100 * sd / abs(mean):.0f}%"  # ASCII: stdout may not be UTF-8
    return text


def format_table(primary: str, runs: Dict[str, dict]) -> str:
    others = [m for m in runs if m != primary]
    header = ["workload", "unit", primary] + others + [f"{primary}/{m}" for m in others]
    lines = [header]
    errors = []
    for entry in comparison(primary, runs):
        cells = [entry["workload"], entry["unit"] or ""]
        for module in [primary] + others:
            row = entry["results"].get(module)
            cells.append(_format_value(row))
            if row and row.get("error"):
                errors.append(f"  [{module}] {entry['workload']}: {summarize_error(row['error'])}")
        for module in others:
            value = entry["ratio"].get(module)
            cells.append("-" if value is None else f"{value:.2f}x")
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    rendered = []
    for number, cells in enumerate(lines):
        # Left-align names, right-align numbers.
        rendered.append("  ".join(cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i])
                                  for i, cell in enumerate(cells)).rstrip())
        if number == 0:
            rendered.append("  ".join("-" * width for width in widths))
    if others:
        rendered.append(f"ratio > 1 means {primary} is better "
                        f"(throughput: {primary}/other; 'init to first result': other_time/{primary}_time)")
    if errors:
        rendered.append("errors:")
        rendered.extend(errors)
    return "\n".join(rendered)


def machine_info() -> dict:
    return {
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def write_json(path: str, primary: str, runs: Dict[str, dict], quick: bool,
               only: Optional[str], init_kwargs: dict) -> None:
    document = {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mode": "quick" if quick else "full",
        "only": only,
        "primary": primary,
        "machine": machine_info(),
        "init_kwargs": init_kwargs,
        "modules": runs,
        # Modules that did not run have nothing to line up.
        "comparison": comparison(primary, {m: r for m, r in runs.items()
                                           if r.get("status") != "not installed" or m == primary}),
    }
    with open(path, "w") as out:
        json.dump(document, out, indent=2)
        out.write("\n")
