"""The simulator's closed choices, in a module light enough for the CLI to import for --help."""

from __future__ import annotations

from enum import StrEnum


class Fidelity(StrEnum):
    CTMC = "ctmc"  # exponential service, exactly the fluid model's stochastic version
    ITERATION = "iteration"  # GPUs run iterations of the batch's actual duration


class PolicyName(StrEnum):
    """The controllers a run can use (names as the validation report spells them).

    Each is a `controllers.baselines` policy, run on the spec as given or with its gate or
    router rule replaced: prioritize-and-route is gate-and-route with the static-priority
    gate of separate pricing, sli-router is gate-and-route with the SLI split router.
    """

    GATE_AND_ROUTE = "gate-and-route"  # the spec's own gate and router
    PRIORITIZE_AND_ROUTE = "prioritize-and-route"
    SLI_ROUTER = "sli-router"
    FI_WSP = "FI-WSP"
    GI_WSP = "GI-WSP"
    GF_WSP = "GF-WSP"
    FG_SP = "FG-SP"
