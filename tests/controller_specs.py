"""Controller specs built by hand, so the runtime's tests choose the targets themselves.

The rules are pinned on hand-made states; a spec from a solve would make every expected
decision depend on the solver's output. Only the fields the runtime reads are chosen;
the rest hold plausible placeholders.
"""

from __future__ import annotations

from dataclasses import dataclass

from fluidgate.controllers.spec import (
    ClassPrediction,
    ClassSpec,
    ClassTargets,
    ClusterPlanSpec,
    ControllerSpec,
    GateRule,
    PolicySource,
    RouterRule,
    SolverInfo,
)


@dataclass(frozen=True)
class Cls:
    """One class as a test sees it: its targets (cluster-wide) and its routing."""

    prefill: float  # n·x*
    prefill_queue: float = 0.0  # n·q_p*
    p_solo: float = 1.0
    priority: int | None = None  # rank; default: the listing order
    prompt: float = 300.0
    output: float = 1000.0


def make_spec(classes: list[Cls], gate: GateRule = GateRule.OCCUPANCY_DEFICIT,
              router: RouterRule = RouterRule.SOLO_FIRST, gpus: int = 10,
              mixed: int = 4) -> ControllerSpec:
    rows = []
    for i, c in enumerate(classes):
        rows.append(ClassSpec(
            name=f"c{i}", rate=0.5, prompt=c.prompt, output=c.output, patience=10.0,
            price_input=0.1, price_output=0.2,
            priority=c.priority if c.priority is not None else i + 1, p_solo=c.p_solo,
            targets=ClassTargets(prefill=c.prefill, decodes_mixed=1.0, decodes_solo=2.0,
                                 prefill_queue=c.prefill_queue, decode_queue=0.0),
            predicted=ClassPrediction(arrivals=5.0, admitted=4.0, served=4.0, abandonment=0.2,
                                      wait=0.5, ttft=0.6, tpot=0.03)))
    return ControllerSpec(
        schema="fluidgate.controller/v2", generator="fluidgate test",
        policy=PolicySource(name="hand-made", path="hand-made.sli", sha256="0" * 64),
        solver=SolverInfo(name="none", status="optimal"),
        pricing="bundled" if gate is GateRule.OCCUPANCY_DEFICIT else "separate",
        objective="revenue", r_star=1.0, revenue_rate=1.0,
        cluster=ClusterPlanSpec(gpus=gpus, max_batch=16, chunk=256.0, alpha=0.0174,
                                beta=6.2e-5, tau_mix=0.0333, tau_solo=0.022,
                                gamma=1 / 0.022, iteration_source="inline",
                                mixed_share=mixed / gpus, mixed_gpus=mixed,
                                solo_gpus=gpus - mixed),
        gate=gate, router=router, classes=rows)
