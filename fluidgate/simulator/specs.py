"""TEMPORARY: a controller spec from a solved policy, until `build_spec` reaches main.

Deleted when the metrics branch's `build_spec(solution)` lands; `fluidgate validate` and the
tests then call that instead.
"""

from __future__ import annotations

import hashlib

from fluidgate import __version__
from fluidgate.controllers.spec import ControllerSpec
from fluidgate.model import service_rates
from fluidgate.solution import Solution


def spec_from_solution(sol: Solution) -> ControllerSpec:
    policy = sol.policy
    plan = sol.plan
    assert plan is not None and sol.objective is not None and sol.revenue_rate is not None
    c = policy.cluster
    n = c.gpus
    order = sorted(range(len(policy.classes)),
                   key=lambda i: -policy.classes[i].output / policy.classes[i].prompt)
    rank = {i: r + 1 for r, i in enumerate(order)}
    classes = []
    for i, (wc, cs) in enumerate(zip(policy.classes, sol.classes, strict=True)):
        r = service_rates(c, wc)
        served = r.mu_m * cs.y_m + r.mu_s * cs.y_s
        classes.append({
            "name": wc.name, "rate": wc.rate, "prompt": wc.prompt, "output": wc.output,
            "patience": wc.patience, "price_input": wc.price_input,
            "price_output": wc.price_output, "priority": rank[i],
            "p_solo": (r.mu_s * cs.y_s / served) if served > 0 else 1.0,
            "targets": {"prefill": n * cs.x, "decodes_mixed": n * cs.y_m,
                        "decodes_solo": n * cs.y_s, "prefill_queue": n * cs.q_p,
                        "decode_queue": n * cs.q_d},
            "predicted": {"arrivals": cs.arrivals, "admitted": cs.admitted,
                          "served": cs.served, "abandonment": min(1.0, cs.abandonment),
                          "wait": cs.wait, "ttft": cs.ttft, "tpot": cs.tpot},
        })
    doc = {
        "schema": "fluidgate.controller/v1", "generator": f"fluidgate {__version__}",
        "policy": {"name": policy.name, "path": policy.source_file,
                   "sha256": hashlib.sha256(policy.source_text.encode()).hexdigest()},
        "solver": {"name": sol.solver, "status": "optimal", "message": sol.message},
        "pricing": policy.pricing, "objective": policy.objective.value,
        "r_star": sol.objective, "revenue_rate": sol.revenue_rate,
        "cluster": {"gpus": n, "max_batch": c.max_batch, "chunk": c.chunk,
                    "alpha": c.iteration.alpha, "beta": c.iteration.beta, "tau_mix": c.tau,
                    "tau_solo": c.iteration.tau_solo, "gamma": c.gamma,
                    "iteration_source": c.iteration.source, "mixed_share": plan.mixed_share,
                    "mixed_gpus": plan.mixed_gpus, "solo_gpus": plan.solo_gpus},
        "gate": "occupancy-deficit" if policy.pricing == "bundled" else "static-priority",
        "router": "solo-first",
        "classes": classes, "slos": [], "warnings": list(sol.warnings),
    }
    return ControllerSpec.model_validate(doc)
