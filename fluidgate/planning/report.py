"""What `capacity` prints and writes: the answer, what decides it, and every probe."""

from __future__ import annotations

import json
from dataclasses import asdict

from rich.console import Console

from fluidgate.model import Policy
from fluidgate.planning.capacity import MAX_GPUS, CapacityAnswer


def capacity_json(a: CapacityAnswer) -> str:
    doc = {"growth": a.growth, "gpus": a.gpus, "min_r_star": a.floor,
           "meets_min_r_star": a.meets_floor, "monotone": a.monotone,
           "deciding": list(a.deciding), "probes": [asdict(p) for p in a.probes]}
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


def _say(out: Console, text: str) -> None:
    out.print(text, markup=False, highlight=False)


def render_capacity(a: CapacityAnswer, policy: Policy, out: Console) -> None:
    traffic = sum(c.rate for c in policy.classes) * policy.cluster.gpus * a.growth
    _say(out, f"traffic: {traffic:.6g} requests/s cluster-wide (x{a.growth:g} the policy's "
              f"rates on {policy.cluster.gpus} GPUs)")
    if a.gpus is None:
        last = a.probes[-1] if a.probes else None
        why = f"; at {last.gpus:,} GPUs: {', '.join(last.conflict)}" if last and \
            last.conflict else ""
        _say(out, f"no GPU count up to {MAX_GPUS:,} meets every hard SLO{why}")
        return
    assert a.at is not None
    _say(out, f"fewest GPUs: {a.gpus:,}")
    r = a.at.r_star
    _say(out, f"  at {a.gpus:,}: R* {r:.6g} per GPU per s" if r is not None else "")
    for label, shadow, unit in a.at.binding:
        per = f" per {unit}" if unit else ""
        price = "" if shadow is None else f" (shadow price {shadow:.4g}{per})"
        _say(out, f"    binds: {label}{price}")
    if a.below is None:
        _say(out, "  1 GPU already meets every hard SLO")
    else:
        _say(out, f"  at {a.below.gpus:,}: infeasible; decided by:")
        for line in a.deciding or ("(the base model: arrivals exceed capacity)",):
            _say(out, f"    {line}")
    check = ("holds" if a.monotone else "FAILS: a probe contradicts it; the answer may not be "
             "the fewest")
    _say(out, f"  {len(a.probes)} verified solves; monotone in GPUs: {check}")
    if a.floor is not None:
        if a.meets_floor:
            _say(out, f"  R* per GPU {r:.6g} >= {a.floor:g}: met")
        else:
            _say(out, f"  R* per GPU {r:.6g} < {a.floor:g}: not met, and more GPUs only "
                      "lower it (the same traffic on more GPUs)")
