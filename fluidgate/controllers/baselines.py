"""The policies a `Controller` can run: gate-and-route and the baselines of DESIGN.md §4.

A policy is three choices — how a free prefill slot picks a class (the gate), where a
finished prefill's decode goes (the router), and whether the cluster is statically
planned into mixed and solo GPUs. The baselines differ from gate-and-route in exactly
those choices, so all five run through the same `Controller` and the same rules, and a
comparison measures the choices, not two implementations. The baseline names read
*admission, routing – planning*: F = first-come-first-served admission, G = the spec's
gate; I = decode stays on the GPU that prefilled it, F = decode goes to any free slot,
G = the spec's router; SP = static planning, WSP = without it (every GPU mixed).

========== ========================= ============================== ===================
policy     gate                      router                         planning
========== ========================= ============================== ===================
gate-and-  the spec's (deficit or    the spec's (solo-first or      ``M = ⌈n·Σx*⌉``
route      priority)                 SLI split)                     mixed, rest solo
FI-WSP     FCFS                      stay on the prefilling GPU     none: all n mixed
GI-WSP     the spec's                stay on the prefilling GPU     none: all n mixed
GF-WSP     the spec's                any free slot, else one FCFS   none: all n mixed
                                     buffer (solo-first over an
                                     all-mixed cluster)
FG-SP      FCFS                      solo-first                     the spec's M / n−M
========== ========================= ============================== ===================

GF-WSP "favours new prefills": with no GPU kept decode-only, every GPU offers its
prefill slot whenever it is idle and requests wait, so prefills are never held back to
keep decodes fast (decodes run at the mixed speed ``1/τ`` instead of ``γ``); decodes go
to any GPU with a free decode slot, not only the one that prefilled them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from fluidgate.controllers import rules
from fluidgate.controllers.spec import ControllerSpec, GateRule, RouterRule


class PolicyName(StrEnum):
    GATE_AND_ROUTE = "gate-and-route"
    FI_WSP = "fi-wsp"
    GI_WSP = "gi-wsp"
    GF_WSP = "gf-wsp"
    FG_SP = "fg-sp"


class GateKind(IntEnum):
    """Admission rules (`rules.gate_*`); values are the `rules.GATE_*` codes."""

    DEFICIT = rules.GATE_DEFICIT
    PRIORITY = rules.GATE_PRIORITY
    FCFS = rules.GATE_FCFS


class RouterKind(IntEnum):
    """Decode-placement rules (`rules.route_*`); values are the `rules.ROUTER_*` codes."""

    SOLO_FIRST = rules.ROUTER_SOLO_FIRST
    SLI = rules.ROUTER_SLI
    STAY = rules.ROUTER_STAY


@dataclass(frozen=True, slots=True)
class PolicyPlan:
    """What a policy does on one spec's cluster: its gate, its router and its pools."""

    policy: PolicyName
    gate: GateKind
    router: RouterKind
    mixed_gpus: int
    solo_gpus: int


_SPEC_GATE = {GateRule.OCCUPANCY_DEFICIT: GateKind.DEFICIT,
              GateRule.STATIC_PRIORITY: GateKind.PRIORITY}
_SPEC_ROUTER = {RouterRule.SOLO_FIRST: RouterKind.SOLO_FIRST,
                RouterRule.SLI_SPLIT: RouterKind.SLI}


def plan_for(policy: PolicyName, spec: ControllerSpec) -> PolicyPlan:
    """The gate, router and pool sizes `policy` uses on the cluster of `spec`."""
    gate = _SPEC_GATE[spec.gate]
    router = _SPEC_ROUTER[spec.router]
    planned = (spec.cluster.mixed_gpus, spec.cluster.solo_gpus)
    unplanned = (spec.cluster.gpus, 0)
    choices: dict[PolicyName, tuple[GateKind, RouterKind, tuple[int, int]]] = {
        PolicyName.GATE_AND_ROUTE: (gate, router, planned),
        PolicyName.FI_WSP: (GateKind.FCFS, RouterKind.STAY, unplanned),
        PolicyName.GI_WSP: (gate, RouterKind.STAY, unplanned),
        PolicyName.GF_WSP: (gate, RouterKind.SOLO_FIRST, unplanned),
        PolicyName.FG_SP: (GateKind.FCFS, RouterKind.SOLO_FIRST, planned),
    }
    g, r, (mixed, solo) = choices[policy]
    return PolicyPlan(policy=policy, gate=g, router=r, mixed_gpus=mixed, solo_gpus=solo)
