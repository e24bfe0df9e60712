"""The machine-readable solution (`fluidgate.solution/v1`), written atomically.

Values are in base units (seconds, tokens, requests per second); LP variables are per GPU
under the names of docs/model.md, operator quantities are cluster-wide. The policy's text hash
ties a document to the exact policy that produced it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fluidgate import __version__
from fluidgate.atomic import write_output
from fluidgate.conflict import Conflict
from fluidgate.solution import Solution

SCHEMA_ID = "fluidgate.solution/v1"


def _num(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _no_negative_zero(value: Any) -> Any:
    """-0.0 (a solver's round-off on a zero) reads as a sign to whoever parses the document;
    every zero is written as 0.0. The document is a few levels deep, so recursion is bounded."""
    if isinstance(value, float):
        return 0.0 if value == 0.0 else value
    if isinstance(value, dict):
        return {k: _no_negative_zero(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_no_negative_zero(v) for v in value]
    return value


def solution_document(sol: Solution) -> dict[str, Any]:
    """The document as plain JSON values, with no negative zeros."""
    doc: dict[str, Any] = _no_negative_zero(_document(sol))
    return doc


def _document(sol: Solution) -> dict[str, Any]:
    pol = sol.policy
    c = pol.cluster
    doc: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "generator": f"fluidgate {__version__}",
        "policy": {
            "name": pol.name,
            "file": pol.source_file,
            "sha256": hashlib.sha256(pol.source_text.encode("utf-8")).hexdigest(),
            "pricing": pol.pricing,
            "objective": pol.objective.value,
        },
        "solver": {"name": sol.solver, "message": sol.message, "seconds": sol.timings},
        "status": sol.status.value,
        "verified": sol.verification is not None and sol.verification.ok,
        "objective": _num(sol.objective),
        "objective_cluster": _num(sol.cluster_objective),
        "revenue_rate": _num(sol.revenue_rate),
        "penalty": sol.penalty if sol.optimal else None,
        "units": {"objective": "per GPU per second", "time": "s", "rate": "requests/s",
                  "lp_variables": "per GPU"},
        "cluster": {
            "gpus": c.gpus,
            "max_batch": c.max_batch,
            "chunk": c.chunk,
            "alpha": c.iteration.alpha,
            "beta": c.iteration.beta,
            "tau_mix": c.tau,
            "tau_solo": c.iteration.tau_solo,
            "gamma": c.gamma,
            "iteration_source": c.iteration.source,
        },
        "classes": {},
        "slos": [],
        "warnings": list(sol.warnings),
    }
    if sol.plan is not None:
        doc["cluster"].update(
            mixed_share=sol.plan.mixed_share,
            mixed_gpus=sol.plan.mixed_gpus,
            solo_gpus=sol.plan.solo_gpus,
        )
    for cs in sol.classes:
        doc["classes"][cs.name] = {
            **cs.lp_values,
            "arrivals": cs.arrivals,
            "admitted": cs.admitted,
            "served": cs.served,
            "abandonment": cs.abandonment,
            "wait": cs.wait,
            "ttft": _num(cs.ttft),
            "tpot": _num(cs.tpot),
            "p_solo": cs.p_solo,
            "prefill_gpus": cs.prefill_gpus,
            "decodes_mixed": cs.decodes_mixed,
            "decodes_solo": cs.decodes_solo,
            "prefill_queue": cs.prefill_queue,
            "decode_queue": cs.decode_queue,
        }
    for o in sol.slos:
        doc["slos"].append({
            "label": o.label, "line": o.line, "soft": o.soft, "op": o.op,
            "value": _num(o.value), "bound": _num(o.bound), "slack": _num(o.slack),
            "binding": o.binding, "shadow_price": _num(o.shadow_price),
            "violation": _num(o.violation),
            "display_unit": o.unit, "display_scale": o.unit_scale,
        })
    if sol.verification is not None:
        v = sol.verification
        doc["verification"] = {  # relative errors, see docs/solvers.md
            "row_residual": _num(v.row_residual), "bound_violation": _num(v.bound_violation),
            "dual_infeasibility": _num(v.dual_infeasibility), "gap": _num(v.gap),
            "failures": [f.describe() for f in v.failures],
        }
    if sol.conflict is not None:
        doc["conflict"] = conflict_document(sol.conflict)
    return doc


def conflict_document(conflict: Conflict) -> dict[str, Any]:
    """Every conflicting SLO with its conflict number (from 1) and nearest feasible bound
    (base units, and as printed: in the display unit, rounded outward)."""
    slos = []
    for g, group in enumerate(conflict.groups, start=1):
        for item in group:
            printed = item.nearest_text().partition("nearest feasible bound ")[2] or None
            slos.append({
                "label": item.label, "line": item.span.line if item.span else None,
                "conflict": g, "op": item.op, "bound": _num(item.bound),
                "nearest_feasible_bound": _num(item.nearest_bound),
                "nearest_feasible_bound_display": printed,
                "loosen_by": _num(item.loosen_by),
                "nearest_bound_verified": not item.unreliable,
                "display_unit": item.unit, "display_scale": item.unit_scale,
            })
    return {
        "conflicts": len(conflict.groups),
        "slos": slos,
        "bounds_with_other_conflicts_set_aside": conflict.others_set_aside,
        "more_conflicts": conflict.more,
        "traffic_exceeds_capacity": conflict.base_infeasible,
        "classes_without_patience": list(conflict.impatient_classes),
        "search_verified": not conflict.unverified,
        "search_failure": conflict.unverified or None,
    }


def solution_json(sol: Solution) -> str:
    """The document as the JSON text every writer uses (file or standard output)."""
    return json.dumps(solution_document(sol), indent=2, sort_keys=False, allow_nan=False) + "\n"


def write_solution(
    sol: Solution, path: str | Path, *, inputs: Sequence[str | Path] = ()
) -> Path | None:
    """Write under `fluidgate.atomic`'s rules; `-` is standard output (then None)."""
    return write_output(path, solution_json(sol), inputs=inputs, allow_stdout=True)
