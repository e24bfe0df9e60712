"""Build the controller spec (`fluidgate.controller/v2`) from an optimal, verified plan.

The LP fixes the targets; four choices around them are the builder's, made here once:

- **Gate.** Bundled pricing: the occupancy-deficit gate (admit the class furthest below its
  prefill target `n·x*`). Separate pricing: static priority by `D/P` (DESIGN.md §4).
- **Priority rank** (1 first), used by the static-priority gate and exported to serving
  stacks that only have static priorities. Separate pricing: `D_i/P_i` descending, as the
  gate of DESIGN.md §4. Bundled pricing: ascending mean prefill wait of the optimum
  (`q_p*/λ`): a static-priority scheduler makes lower classes wait longer, so ranking by the
  waits the LP chose reproduces its pattern — classes it admits without waiting first, the
  class it throttles (lets abandon) last. Equal waits (typically 0) fall back to `D/P`, then
  to the policy's order.
- **Router.** `sli-split` (route class i to the solo pool with probability `p_s,i`) when a
  binding SLO depends on *where* decodes run (`tpot`, per class or cluster, or
  `spread(decode)`: `metrics.depends_on_placement`); a soft one counts when it binds or is
  violated. Solo-first ignores the class when it places a decode, so the per-class mix of
  pools the LP chose to meet such an SLO would be lost. Every other metric depends only on how
  many requests are admitted and completed, which solo-first reaches with the planned pools.
- **Classification.** A policy names its classes by their traffic, not by what a request
  carries, so the only rules it implies are prompt-length ranges: each class whose mean
  prompt no other class shares gets the whole tokens nearer (in log space) to its mean than
  to a neighbouring mean, the split `planning/derive.py` groups traces by. Classes sharing a
  mean prompt get no range and are told apart by the `nearest` fallback, which also looks at
  `max_tokens`. Rules on the `model` name or a header are the operator's to add.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import Counter
from pathlib import Path
from typing import Any

from fluidgate import __version__
from fluidgate.controllers.spec import (
    CLASS_HEADER,
    SCHEMA_ID,
    ControllerSpec,
    Fallback,
    GateRule,
    RouterRule,
    SpecError,
    spec_from_payload,
)
from fluidgate.metrics import Metric, depends_on_placement
from fluidgate.model import (
    BinOp,
    Expr,
    IterationCurve,
    MetricRef,
    Neg,
    SloConstraint,
    WorkloadClass,
)
from fluidgate.solution import QUEUE_TOL, ClassSolution, Solution

# Solver round-off below this (relative) is cleaned to the bound it overshoots: a target of
# −1e-14 GPUs is 0, not a spec to reject.
NOISE = 1e-9


def priority_ranks(sol: Solution) -> list[int]:
    """Rank of each class (1 admitted first), in policy order; see the module docstring."""
    pol = sol.policy

    def key(i: int) -> tuple[float, float, int]:
        cls, cs = pol.classes[i], sol.classes[i]
        dp = -cls.output / cls.prompt
        if pol.pricing == "separate":
            return (0.0, dp, i)
        wait = cs.q_p / cls.rate if cs.q_p > QUEUE_TOL else 0.0
        return (float(f"{wait:.9g}"), dp, i)  # waits equal to 9 digits tie

    order = sorted(range(len(pol.classes)), key=key)
    ranks = [0] * len(order)
    for rank, i in enumerate(order, start=1):
        ranks[i] = rank
    return ranks


def _metrics_in(e: Expr) -> list[MetricRef]:
    if isinstance(e, MetricRef):
        return [e]
    if isinstance(e, BinOp):
        return _metrics_in(e.left) + _metrics_in(e.right)
    if isinstance(e, Neg):
        return _metrics_in(e.operand)
    return []


def _placement_bound(slo: SloConstraint) -> bool:
    return any(depends_on_placement(Metric(m.name), m.arg)
               for m in _metrics_in(slo.lhs) + _metrics_in(slo.rhs))


def choose_router(sol: Solution) -> tuple[RouterRule, str]:
    """The router rule and a sentence saying why; see the module docstring."""
    active = [o.label for slo, o in zip(sol.policy.slos, sol.slos, strict=True)
              if (o.binding or (o.violation or 0.0) > 0.0) and _placement_bound(slo)]
    if active:
        return RouterRule.SLI_SPLIT, (
            f"binding SLO(s) that depend on where decodes run: {'; '.join(active)}; each "
            "class goes to the solo pool with the optimum's probability p_solo")
    return RouterRule.SOLO_FIRST, (
        "no binding SLO depends on where decodes run (tpot, spread(decode)), so solo-first "
        "routing reaches the plan's completions")


def classification(classes: list[WorkloadClass]) -> dict[str, object]:
    """The `classification` block: prompt-length ranges (see the module docstring)."""
    shared = Counter(c.prompt for c in classes)
    means = sorted(shared)
    rank = {m: j for j, m in enumerate(means)}  # not means.index: a policy may hold 20,000
    # P < ⌈√(a·b)⌉ ⇔ P < √(a·b) ⇔ log P is nearer log a than log b, for whole tokens P
    cuts = [math.ceil(math.sqrt(a * b)) for a, b in itertools.pairwise(means)]
    rules: list[dict[str, object]] = []
    for c in classes:
        j = rank[c.prompt]
        low = cuts[j - 1] if j > 0 else None
        high = cuts[j] if j < len(cuts) else None
        if shared[c.prompt] > 1 or (low is None and high is None) or (
                low is not None and high is not None and low >= high):
            continue  # no range tells this class apart: the fallback does
        rules.append({"class": c.name, "prompt_tokens": {"min": low, "max": high}})
    told = {r["class"] for r in rules}
    left = [c.name for c in classes if c.name not in told]
    reason = (f"the {CLASS_HEADER} header names a class outright; otherwise "
              + ("prompt-length ranges split at the geometric midpoints of neighbouring mean "
                 "prompts" if rules else "no prompt-length range separates the classes"))
    if rules and left:
        reason += f"; {', '.join(left)}: no range of its own"
    reason += ("; a request no rule matches goes to the class nearest in log(prompt, "
               "output), output being max_tokens when the request gives it")
    return {"rules": rules, "fallback": Fallback.NEAREST.value, "reason": reason}


def _clean(v: float, upper: float | None = None) -> float:
    """Round-off onto the bound it oversteps: [−NOISE, 0) → 0 and (upper, upper + NOISE] →
    upper. Anything further out stays, and the spec's validation rejects it."""
    if -NOISE <= v < 0.0:
        return 0.0
    if upper is not None and upper < v <= upper * (1 + NOISE):
        return upper
    return v


def _opt(v: float | None) -> float | None:
    return None if v is None else _clean(v)


def _curve(c: IterationCurve) -> dict[str, Any]:
    return {"form": c.form.value, "c0": c.c0, "c_chunk": c.c_chunk, "c_chunk2": c.c_chunk2,
            "c_batch": c.c_batch, "b0": c.b0}


def _class(sol: Solution, i: int, cs: ClassSolution, rank: int) -> dict[str, Any]:
    cls = sol.policy.classes[i]
    return {
        "name": cls.name, "rate": cls.rate, "prompt": cls.prompt, "output": cls.output,
        "patience": cls.patience, "price_input": cls.price_input,
        "price_output": cls.price_output, "priority": rank, "p_solo": _clean(cs.p_solo, 1.0),
        "targets": {
            "prefill": _clean(cs.prefill_gpus), "decodes_mixed": _clean(cs.decodes_mixed),
            "decodes_solo": _clean(cs.decodes_solo), "prefill_queue": _clean(cs.prefill_queue),
            "decode_queue": _clean(cs.decode_queue)},
        "predicted": {
            "arrivals": cs.arrivals, "admitted": _clean(cs.admitted),
            "served": _clean(cs.served), "abandonment": _clean(cs.abandonment, 1.0),
            "wait": _clean(cs.wait), "ttft": _opt(cs.ttft), "tpot": _opt(cs.tpot)},
    }


def spec_payload(sol: Solution, policy_path: str | Path) -> dict[str, Any]:
    """The spec as plain JSON data (validated by `build_spec`)."""
    if not sol.optimal or sol.objective is None or sol.plan is None:
        raise SpecError(f"only an optimal plan becomes a controller spec; the solver "
                        f"reported '{sol.status.value}'")
    if sol.verification is not None and not sol.verification.ok:
        raise SpecError("the plan failed fluidgate's verification; no controller spec is "
                        "written for it")
    pol = sol.policy
    c = pol.cluster
    plan = sol.plan
    router, reason = choose_router(sol)
    ranks = priority_ranks(sol)
    return {
        "schema": SCHEMA_ID,
        "generator": f"fluidgate {__version__}",
        "policy": {"name": pol.name, "path": str(policy_path),
                   "sha256": hashlib.sha256(pol.source_text.encode("utf-8")).hexdigest()},
        "solver": {"name": sol.solver, "status": sol.status.value, "message": sol.message},
        "pricing": pol.pricing,
        "objective": pol.objective.value,
        "r_star": sol.objective,
        "revenue_rate": sol.revenue_rate,
        "cluster": {
            "gpus": c.gpus, "max_batch": c.max_batch, "chunk": c.chunk,
            "alpha": c.iteration.alpha, "beta": c.iteration.beta, "tau_mix": c.tau,
            "tau_solo": c.iteration.tau_solo, "gamma": c.gamma,
            "iteration_source": c.iteration.source,
            "mixed_share": _clean(plan.mixed_share, 1.0), "mixed_gpus": plan.mixed_gpus,
            "solo_gpus": plan.solo_gpus,
            "curves": {"mixed": _curve(c.iteration.mixed_curve),
                       "solo": _curve(c.iteration.solo_curve)},
        },
        "gate": (GateRule.OCCUPANCY_DEFICIT if pol.pricing == "bundled"
                 else GateRule.STATIC_PRIORITY).value,
        "router": router.value,
        "router_reason": reason,
        "classes": [_class(sol, i, cs, ranks[i]) for i, cs in enumerate(sol.classes)],
        "classification": classification(list(pol.classes)),
        "slos": [{
            "label": o.label, "line": o.line, "soft": o.soft, "op": o.op, "bound": o.bound,
            "value": o.value, "binding": o.binding, "shadow_price": o.shadow_price,
            "violation": o.violation, "unit": o.unit, "unit_scale": o.unit_scale}
            for o in sol.slos],
        "warnings": list(sol.warnings),
    }


def build_spec(sol: Solution, policy_path: str | Path) -> ControllerSpec:
    """The controller spec of an optimal, verified plan; `SpecError` (in words, naming the
    field) for anything else."""
    return spec_from_payload(spec_payload(sol, policy_path), "controller spec")
