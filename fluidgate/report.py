"""The terminal report: what the optimum means to the operator who has to run it.

Tables are laid out by `tablefit` so nothing is cut at any width. A policy with many classes
gets its busiest classes and a one-line total of the rest (the JSON document has every class):
drawing twenty thousand rows took two thirds of a large solve and no one reads them on a
terminal, so the report's cost follows the rows shown, not the policy's size.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from fluidgate.solution import ClassSolution, SloOutcome, Solution
from fluidgate.tablefit import Column, Sheet, fit
from fluidgate.textsafe import safe_text
from fluidgate.wording import plural

#: Rows per table (classes, service levels, warnings) unless the operator asks for all.
SHOWN_ROWS = 25


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v * 1e3:,.1f} ms"


def _clean(v: float) -> float:
    """Solver round-off (1e-14) reads as a real number to an operator; show it as 0."""
    return 0.0 if abs(v) < 1e-9 else v


def _fmt(v: float | None, digits: int = 4) -> str:
    if v is None:
        return "—"
    v = _clean(v)
    return f"{v:,.0f}" if 1e4 <= abs(v) < 1e15 else f"{v:,.{digits}g}"  # 37,170 not 3.717e+04


def _pct(v: float) -> str:
    return f"{_clean(v) * 100:.2f}%"


def _objective_unit(sol: Solution) -> str:
    obj = sol.policy.objective.value
    return {"revenue": "money/s", "throughput": "tokens/s", "served": "requests/s"}[obj]


def _scaled(v: float | None, scale: float, unit: str) -> str:
    if v is None:
        return "—"
    return f"{_clean(v) / scale:,.4g} {unit}".rstrip()


def _header(sol: Solution) -> Panel:
    pol = sol.policy
    c = pol.cluster
    head = Text.assemble(
        (safe_text(pol.name), "bold"), f"  ·  {sol.solver}  ·  ",
        (sol.status.value, "green" if sol.optimal else "red bold"),
        f"  ·  {sum(sol.timings.values()) * 1e3:.0f} ms",
    )
    if not sol.optimal or sol.objective is None or sol.plan is None:
        return Panel(head, title="fluidgate solve")
    unit = _objective_unit(sol)
    summary = Table.grid(padding=(0, 2))
    summary.add_column(no_wrap=True)
    summary.add_column()
    rows = [
        (f"R* ({pol.objective.value}) per GPU", f"{sol.objective:,.7g} {unit}"),
        ("R* for the cluster", f"{sol.objective * c.gpus:,.6g} {unit}  "
                               f"({sol.objective * c.gpus * 3600:,.6g} per hour)"),
    ]
    if sol.penalty > 0:
        rows.append(("soft-SLO penalties", f"{sol.penalty:,.7g} {unit} per GPU (subtracted)"))
    if pol.objective.value != "revenue" and sol.revenue_rate is not None:
        rows.append(("revenue", f"{sol.revenue_rate:,.7g} money/s per GPU"))
    p = sol.plan
    rows.append(("cluster plan", f"{p.mixed_gpus:,} mixed + {p.solo_gpus:,} solo of "
                                 f"{plural(p.gpus, 'GPU')} (Σx = {p.mixed_share:.4f}; "
                                 f"B = {c.max_batch}, C = {c.chunk:g})"))
    rows.append(("iteration", f"τ_mix = {c.tau * 1e3:.2f} ms, τ_solo = "
                              f"{c.iteration.tau_solo * 1e3:.2f} ms (γ = {c.gamma:.2f}/s)  "
                              f"from {safe_text(c.iteration.source)}"))
    for label, value in rows:
        summary.add_row(Text(label), Text(value))
    return Panel(Group(head, Text(""), summary), title="fluidgate solve")


def shown_classes(sol: Solution, all_classes: bool) -> Sequence[ClassSolution]:
    """Every class, or the busiest SHOWN_ROWS in policy order (the first of equals).

    The one pass over all classes reads their arrival rates into an array; the ordering
    is numpy's, so at 50,000 classes picking the rows costs a few milliseconds.
    """
    if all_classes or len(sol.classes) <= SHOWN_ROWS:
        return sol.classes
    import numpy as np

    arrivals = np.array([cs.arrivals for cs in sol.classes], dtype=np.float64)
    top = np.argsort(-arrivals, kind="stable")[:SHOWN_ROWS]
    return [sol.classes[i] for i in sorted(top.tolist())]


def _rest_of_classes(sol: Solution, shown: Sequence[ClassSolution]) -> Text | None:
    hidden = len(sol.classes) - len(shown)
    if hidden <= 0:
        return None
    arrivals = sum([cs.arrivals for cs in sol.classes]) - sum(cs.arrivals for cs in shown)
    served = sum([cs.served for cs in sol.classes]) - sum(cs.served for cs in shown)
    lost = 1 - served / arrivals if arrivals > 0 else 0.0
    return Text(f"and {plural(hidden, 'more class')}: {_fmt(arrivals)} arrive/s, "
                f"{_fmt(served)} served/s, {_pct(max(lost, 0.0))} not served\n"
                f"(shown: the {len(shown)} with the most traffic; every class: --all-classes "
                "or --json)")


def _class_sheets(sol: Solution, shown: Sequence[ClassSolution]) -> list[Sheet]:
    key = [Column("class", left=True)]
    what = Sheet("What the plan does, per class (cluster-wide)", key, [
        Column(h) for h in ("arrive/s", "admit/s", "serve/s", "abandon", "TTFT", "TPOT")])
    where = Sheet("Where it runs (GPUs and requests, cluster-wide)", key, [
        Column(h) for h in ("prefilling", "decode mixed", "decode solo", "wait prefill",
                            "wait decode", "to solo")])
    for cs in shown:
        name = safe_text(cs.name)
        what.rows.append(([name], [
            _fmt(cs.arrivals), _fmt(cs.admitted), _fmt(cs.served), _pct(cs.abandonment),
            _ms(cs.ttft), _ms(cs.tpot)]))
        where.rows.append(([name], [
            _fmt(cs.prefill_gpus), _fmt(cs.decodes_mixed), _fmt(cs.decodes_solo),
            _fmt(cs.prefill_queue), _fmt(cs.decode_queue), f"{cs.p_solo * 100:.1f}%"]))
    return [what, where]


def _shadow(sol: Solution, o: SloOutcome) -> str:
    if o.shadow_price is None:
        return "—"
    per_hour = o.shadow_price * sol.policy.cluster.gpus * 3600 * o.unit_scale
    tiny = abs(o.shadow_price) < 1e-7 * max(1.0, abs(sol.objective or 0.0))
    return "0" if tiny else f"{per_hour:,.4g} per {o.unit or 'unit'}"


def shown_slo_rows(outcomes: Sequence[SloOutcome]) -> tuple[list[int], int]:
    """The SHOWN_ROWS service-level rows to draw, in policy order: the binding and violated
    ones first, then the others, each group from the top (one pass, no sort); and how many
    rows bind or are violated in all."""
    flagged = [i for i, o in enumerate(outcomes) if o.binding or o.violation]
    chosen = flagged[:SHOWN_ROWS]
    if len(chosen) < SHOWN_ROWS:
        marked = set(flagged)
        chosen += [i for i in range(len(outcomes)) if i not in marked][
            :SHOWN_ROWS - len(chosen)]
    return sorted(chosen), len(flagged)


def _slo_sheet(sol: Solution, all_rows: bool) -> tuple[Sheet, int, int]:
    """The service-level rows; when there are many, the binding and violated ones first."""
    outcomes: Sequence[SloOutcome] = sol.slos
    hidden = hidden_binding = 0
    if not all_rows and len(outcomes) > SHOWN_ROWS:
        chosen, flagged = shown_slo_rows(outcomes)
        outcomes = [outcomes[i] for i in chosen]
        hidden = len(sol.slos) - len(chosen)
        hidden_binding = flagged - sum(1 for o in outcomes if o.binding or o.violation)
    violations = any(o.violation for o in outcomes)
    sheet = Sheet("Service levels", [Column("line"), Column("constraint", left=True)], [
        Column(h) for h in ("achieved", "bound", "binds", "shadow price")
        + (("violation",) if violations else ())])
    for o in outcomes:
        s = o.unit_scale
        cells = [_scaled(o.value, s, o.unit), _scaled(o.bound, s, o.unit),
                 "yes" if o.binding else "", _shadow(sol, o)]
        if violations:
            cells.append(_scaled(o.violation, s, o.unit) if o.violation else "")
        sheet.rows.append(([str(o.line or ""), safe_text(o.label)], cells))
    return sheet, hidden, hidden_binding


def render_solution(sol: Solution, console: Console, all_classes: bool = False) -> None:
    console.print(_header(sol))
    if not sol.optimal or sol.objective is None or sol.plan is None:
        return
    width = console.width
    shown = shown_classes(sol, all_classes)
    for sheet in _class_sheets(sol, shown):
        for part in fit(sheet, width):
            console.print(part, soft_wrap=True)  # laid out already: no re-wrapping
    rest = _rest_of_classes(sol, shown)
    if rest is not None:
        console.print(rest)
    if sol.slos:
        sheet, hidden, hidden_binding = _slo_sheet(sol, all_classes)
        for part in fit(sheet, width):
            console.print(part, soft_wrap=True)  # laid out already: no re-wrapping
        console.print(Text("shadow price: what one unit of looser bound is worth to the "
                           "cluster per hour"))
        if hidden:
            console.print(Text(f"and {plural(hidden, 'more service-level row')}, "
                               f"{hidden_binding:,} of them binding or violated\n(binding and "
                               "violated rows first; every row: --all-classes or --json)"))
    warnings = sol.warnings if all_classes else sol.warnings[:SHOWN_ROWS]
    for w in warnings:
        console.print(Text.assemble(("warning:", "yellow"), f" {safe_text(w)}"))
    if len(sol.warnings) > len(warnings):
        console.print(Text(f"and {plural(len(sol.warnings) - len(warnings), 'more warning')}"
                           " (every one: --all-classes or --json)"))
