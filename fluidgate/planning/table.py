"""The terminal tables of `sweep` and `capacity`: what an operator reads first.

A sweep table has a row per point (the first `MAX_ROWS`; `--json`/`--csv` have all), the
varied values as written, R*, the static plan, and for each SLO the sweep varies its value
and shadow price; other SLOs that bind are named. A point without a verified optimum shows
its status, never a number.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from fluidgate.planning.sweep import SweepPoint, SweepResult
from fluidgate.planning.vary import Kind

MAX_ROWS = 60


def _varied_slos(result: SweepResult, p: SweepPoint) -> list[str]:
    """The SLO names the sweep's SLO parameters touch."""
    out = []
    for v in result.varies:
        if v.kind is not Kind.SLO or v.metric is None:
            continue
        for s in p.slos:
            base, _, arg = s.name.split(" ")[0].partition("(")
            arg = arg.rstrip(")")
            if base == v.metric.value and (arg == (v.arg or "") or (v.arg == "all" and arg)):
                out.append(s.name)
    return out


def _num(v: float | None, digits: int = 4) -> str:
    return "—" if v is None else f"{v:.{digits}g}"


def render_sweep(result: SweepResult, console: Console) -> None:
    first = next((p for p in result.points if p.optimal), None)
    shown = _varied_slos(result, first) if first is not None else []
    table = Table(box=None, pad_edge=False, show_edge=False)
    for v in result.varies:
        table.add_column(v.label, justify="right")
    table.add_column("R* /GPU/s", justify="right")
    table.add_column("mixed", justify="right")
    table.add_column("solo", justify="right")
    for name in shown[:3]:
        table.add_column(f"{name.split(' ')[0]}", justify="right")
        table.add_column("shadow", justify="right")
    table.add_column("other binding SLOs")
    for p in result.points[:MAX_ROWS]:
        cells = [p.shown[v.label] for v in result.varies]
        if not p.optimal:
            cells += [p.status] + [""] * (2 + 2 * len(shown[:3])) + [p.message[:60]]
            table.add_row(*cells)
            continue
        cells += [_num(p.r_star, 6), str(p.mixed_gpus), str(p.solo_gpus)]
        by = {s.name: s for s in p.slos}
        for name in shown[:3]:
            s = by[name]
            cells += [f"{_num(s.value)} {s.unit}".rstrip(), _num(s.shadow_price)]
        others = [s.name.rsplit(" ", 1)[0] for s in p.slos if s.binding and s.name not in shown]
        more = f" +{len(others) - 2}" if len(others) > 2 else ""
        cells.append(", ".join(others[:2]) + more)
        table.add_row(*cells)
    console.print(table)
    if len(result.points) > MAX_ROWS:
        console.print(f"... {len(result.points) - MAX_ROWS} more points (--json or --csv "
                      "has every one)", markup=False, highlight=False)
    failed = sum(not p.optimal for p in result.points)
    fresh = sum(p.path == "fresh" for p in result.points)
    units = ", ".join(f"{v.label}" for v in result.varies)
    console.print(f"{len(result.points)} points over {units}: {len(result.points) - failed} "
                  f"optimal, {failed} without a plan; {len(result.points) - fresh} re-solved "
                  f"warm, {fresh} fresh", markup=False, highlight=False)
    if shown:
        console.print("shadow: R* per GPU per second gained per unit of looser bound",
                      markup=False, highlight=False)
