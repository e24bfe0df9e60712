"""Render a results file of `bench/run.py` as the Markdown tables of docs/performance.md.

    python bench/report.py bench/results/2026-11-23-dev.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def ms_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:,.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    return f"{ms:.2f}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def machine_section(doc: dict[str, Any]) -> list[str]:
    m = doc["machine"]
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v)
    commit = m.get("git_commit") or "?"
    dirty = " (with uncommitted changes)" if m.get("git_dirty") else ""
    return [
        f"- date: {doc['date']} (started {doc['started_utc']}, took {doc['seconds']:.0f} s"
        f"{', --quick' if doc['quick'] else ''})",
        f"- `uname -a`: `{m['uname']}`",
        f"- CPU: {m['cpu']}, `nproc` = {m['nproc']}; RAM {m['ram_gib']} GiB",
        f"- Python {m['python']}; {libs}",
        f"- fluidgate at commit `{commit}`{dirty}; generated policies use seed {doc['seed']}",
        f"- load average (1, 5, 15 min) at start {doc.get('loadavg_start')}, "
        f"at end {doc.get('loadavg_end')}",
    ]


def cold_section(doc: dict[str, Any]) -> list[str]:
    c = doc.get("cold_start")
    if not c:
        return ["(not measured)"]
    samples = ", ".join(f"{s:.3f}" for s in c["samples_s"])
    return [
        _row(["command", "runs", "median", "min", "target", "met"]),
        _row(["---", "---:", "---:", "---:", "---:", "---"]),
        _row([f"`{c['command']}`", str(c["runs"]), f"{c['median_s']:.3f} s",
              f"{c['min_s']:.3f} s", f"< {c['target_s']} s", "yes" if c["met"] else "**no**"]),
        "",
        f"Samples (s): {samples}.",
    ]


def fluidgate_table(doc: dict[str, Any]) -> list[str]:
    out = [
        _row(["case", "runs", "rows × cols (nnz)", "parse", "build", "compile", "solve",
              "read back", "**total**", "parse, parser reused"]),
        _row(["---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:"]),
    ]
    for c in doc["cases"]:
        f = c["median_s"]["fluidgate"]
        out.append(_row([
            c["label"], str(c["runs"]), f"{c['rows']:,} × {c['cols']:,} ({c['nnz']:,})",
            ms_text(f["parse"]), ms_text(f["build"]), ms_text(f["compile"]), ms_text(f["solve"]),
            ms_text(f["readback"]), f"**{ms_text(f['total'])}**",
            ms_text(c["median_s"]["parse_reused_parser"]),
        ]))
    return out


def floor_table(doc: dict[str, Any]) -> list[str]:
    out = [
        _row(["case", "arrays", "load", "run", "read back", "**total**", "**fluidgate / floor**",
              "same, parser reused", "same, parse excluded", "objective", "max rel. Δ"]),
        _row(["---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:",
              "---:"]),
    ]
    for c in doc["cases"]:
        f = c["median_s"]["floor"]
        reused = c["ratio_reused_parser"]
        out.append(_row([
            c["label"], ms_text(f["arrays"]), ms_text(f["load"]), ms_text(f["run"]),
            ms_text(f["readback"]),
            f"**{ms_text(f['total'])}**", f"**{c['ratio']:.1f}×**",
            "—" if reused is None else f"{reused:.1f}×", f"{c['ratio_without_parse']:.1f}×",
            f"{c['objective']:.9g}",
            f"{c['max_rel_diff']:.0e}",
        ]))
    return out


def targets_table(doc: dict[str, Any]) -> list[str]:
    out = [_row(["target", "measured", "met"]), _row(["---", "---:", "---"])]
    for t in doc["targets"]:
        value = f"{t['value']:.3f} s" if t["unit"] == "s" else f"{t['value']:.1f}×"
        out.append(_row([t["target"], value, "yes" if t["met"] else "**no**"]))
    return out


def render(doc: dict[str, Any]) -> str:
    parts = [
        "### Machine", "", *machine_section(doc), "",
        "### Cold start", "", *cold_section(doc), "",
        "### fluidgate path (median ms)", "", *fluidgate_table(doc), "",
        "### Direct highspy floor (median ms) and ratio", "", *floor_table(doc), "",
        "### Targets", "", *targets_table(doc),
    ]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Markdown tables from a bench results file")
    ap.add_argument("results", type=Path)
    args = ap.parse_args(argv)
    doc = json.loads(args.results.read_text())
    sys.stdout.write(render(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
