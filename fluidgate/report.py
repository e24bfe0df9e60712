"""The terminal report: what the optimum means to the operator who has to run it."""

from __future__ import annotations

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from fluidgate.solution import Solution


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v * 1e3:,.1f} ms"


def _clean(v: float) -> float:
    """Solver round-off (1e-14) reads as a real number to an operator; show it as 0."""
    return 0.0 if abs(v) < 1e-9 else v


def _fmt(v: float | None, digits: int = 4) -> str:
    return "—" if v is None else f"{_clean(v):,.{digits}g}"


def _objective_unit(sol: Solution) -> str:
    obj = sol.policy.objective.value
    return {"revenue": "money/s", "throughput": "tokens/s", "served": "requests/s"}[obj]


def render_solution(sol: Solution, console: Console) -> None:
    pol = sol.policy
    c = pol.cluster
    head = Text.assemble(
        (pol.name, "bold"), f"  ·  {sol.solver}  ·  ",
        (sol.status.value, "green" if sol.optimal else "red bold"),
        f"  ·  {sum(sol.timings.values()) * 1e3:.0f} ms",
    )
    if not sol.optimal or sol.objective is None or sol.plan is None:
        console.print(Panel(head, title="fluidgate solve"))
        return
    unit = _objective_unit(sol)
    summary = Table.grid(padding=(0, 2))
    summary.add_row(f"R* ({pol.objective.value}) per GPU", f"{sol.objective:,.7g} {unit}")
    summary.add_row("R* for the cluster", f"{sol.objective * c.gpus:,.6g} {unit}  "
                    f"({sol.objective * c.gpus * 3600:,.6g} per hour)")
    if sol.penalty > 0:
        summary.add_row("soft-SLO penalties", f"{sol.penalty:,.7g} {unit} per GPU (subtracted)")
    if pol.objective.value != "revenue" and sol.revenue_rate is not None:
        summary.add_row("revenue", f"{sol.revenue_rate:,.7g} money/s per GPU")
    p = sol.plan
    summary.add_row("cluster plan", f"{p.mixed_gpus} mixed + {p.solo_gpus} solo of {p.gpus} "
                    f"GPUs (Σx = {p.mixed_share:.4f}; B = {c.max_batch}, C = {c.chunk:g})")
    summary.add_row("iteration", f"τ_mix = {c.tau * 1e3:.2f} ms, τ_solo = "
                    f"{c.iteration.tau_solo * 1e3:.2f} ms (γ = {c.gamma:.2f}/s)"
                    f"  from {escape(c.iteration.source)}")
    console.print(Panel(Group(head, Text(""), summary), title="fluidgate solve"))

    n = c.gpus
    t = Table(title="What the plan does, per class (cluster-wide)", title_justify="left")
    for col in ("class", "arrive/s", "admit/s", "serve/s", "abandon", "TTFT", "TPOT"):
        t.add_column(col, justify="left" if col == "class" else "right",
                     overflow="fold" if col == "class" else "ellipsis")
    for cs in sol.classes:
        t.add_row(cs.name, _fmt(cs.arrivals), _fmt(cs.admitted), _fmt(cs.served),
                  f"{_clean(cs.abandonment) * 100:.2f}%", _ms(cs.ttft), _ms(cs.tpot))
    console.print(t)
    t = Table(title="Where it runs (GPUs and requests, cluster-wide)", title_justify="left")
    for col in ("class", "prefilling", "decode mixed", "decode solo", "wait prefill",
                "wait decode", "to solo"):
        t.add_column(col, justify="left" if col == "class" else "right",
                     overflow="fold" if col == "class" else "ellipsis")
    for cs in sol.classes:
        to_solo = "—" if cs.p_solo is None else f"{cs.p_solo * 100:.1f}%"
        t.add_row(cs.name, _fmt(n * cs.x), _fmt(n * cs.y_m), _fmt(n * cs.y_s),
                  _fmt(n * cs.q_p), _fmt(n * cs.q_d), to_solo)
    console.print(t)
    if sol.slos:
        s = Table(title="Service levels (shadow price: what one unit of looser bound is "
                  "worth to the cluster per hour)", title_justify="left")
        for col in ("line", "constraint", "achieved", "bound", "binds", "shadow price"):
            s.add_column(col, justify="left" if col == "constraint" else "right")
        for o in sol.slos:
            scale = o.unit_scale
            shadow = "—"
            if o.shadow_price is not None:
                per_hour = o.shadow_price * n * 3600 * scale
                tiny = abs(o.shadow_price) < 1e-7 * max(1.0, abs(sol.objective))
                shadow = "0" if tiny else f"{per_hour:,.4g} per {o.unit or 'unit'}"
            s.add_row(
                str(o.line or ""), escape(o.label),
                _scaled(o.value, scale, o.unit), _scaled(o.bound, scale, o.unit),
                "yes" if o.binding else "",
                shadow + (f"; violated by {_scaled(o.violation, scale, o.unit)}"
                          if o.violation else ""),
            )
        console.print(s)
    for w in sol.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(w)}")


def _scaled(v: float | None, scale: float, unit: str) -> str:
    if v is None:
        return "—"
    return f"{_clean(v) / scale:,.4g} {unit}"
