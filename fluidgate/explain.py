"""`fluidgate explain`: each SLO next to the LP row it became, so the translation is auditable."""

from __future__ import annotations

from typing import Any

from fluidgate.diagnostics import PolicyError
from fluidgate.formulations.slo_compile import LinearRow, compile_all
from fluidgate.model import Policy, service_rates
from fluidgate.wording import plural


def row_expression(row: LinearRow, policy: Policy) -> Any:
    """The row as a SymPy relation over readable variable names, coefficients rounded."""
    import sympy as sp

    names = policy.class_names
    lhs = sp.Add(*[
        sp.Float(coef, 6) * sp.Symbol(col.label(names))
        for col, coef in sorted(row.coeffs.items(), key=lambda item: item[0].label())
    ])
    rhs = sp.Float(row.rhs, 6)
    if row.slo.soft:
        line = row.slo.span.line if row.slo.span else "?"
        lhs = lhs - sp.Symbol(f"violation[line {line}]")
        if row.equality:  # a soft equality is missed in either direction
            lhs = lhs + sp.Symbol(f"violation_below[line {line}]")
    return sp.Eq(lhs, rhs, evaluate=False) if row.equality else sp.Le(lhs, rhs, evaluate=False)


def explain_policy(policy: Policy) -> str:
    import sympy as sp

    c = policy.cluster
    out = [
        f"policy '{policy.name}': {plural(len(policy.classes), 'class')}, "
        f"{policy.pricing} pricing, "
        f"maximise {policy.objective.value}",
        f"τ = {c.tau:.6g} s (mixed iteration at C = {c.chunk:g}), γ = {c.gamma:.6g} /s, "
        f"B = {c.max_batch}, n = {c.gpus}",
        "",
        "Base LP (per GPU; the Model page of the docs derives it):",
        "  Σ x ≤ 1;  Σ y_m ≤ (B−1)·Σ x;  Σ y_s ≤ B·(1 − Σ x)",
        "  λ_i − θ_i·q_p,i = μ_p,i·x_i;  μ_p,i·x_i − θ_i·q_d,i = μ_m,i·y_m,i + μ_s,i·y_s,i",
    ]
    for cls in policy.classes:
        r = service_rates(c, cls)
        out.append(f"  {cls.name}: λ = {cls.rate:.6g}, θ = {cls.theta:.6g}, μ_p = {r.mu_p:.6g}, "
                   f"μ_m = {r.mu_m:.6g}, μ_s = {r.mu_s:.6g}")
    if not policy.slos:
        out += ["", "The policy has no slo block."]
        return "\n".join(out)
    compiled = compile_all(policy)
    if compiled.errors:
        raise PolicyError(compiled.errors, policy.source_text)
    out += ["", "Service levels:"]
    for row in compiled.rows:
        slo = row.slo
        where = f"line {slo.span.line}" if slo.span else ""
        kind = f"soft, penalty {slo.penalty:g} per unit of violation" if slo.soft else "hard"
        out.append("")
        out.append(f"{where}: {slo.label}   ({kind})")
        if row.uses_spread:
            for pool in row.uses_spread:
                var = "x" if pool == "prefill" else "y_s"
                out.append(f"  with lo_{pool} ≤ {var}[i]/weight[i] ≤ hi_{pool} for every class")
        if row.trivial:
            out.append("  holds whatever the plan (no LP variable remains), so it is not given "
                       "to the solver")
            continue
        pretty = sp.pretty(row_expression(row, policy), use_unicode=True, wrap_line=False)
        out.extend("  " + line for line in pretty.splitlines())
    return "\n".join(out)
