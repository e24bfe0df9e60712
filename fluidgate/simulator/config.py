"""What one simulation run is: the controller spec's numbers as the arrays the loops read.

The simulator reads the controller spec and nothing else (DESIGN.md §5). A spec it cannot
represent is refused here, before any loop runs, with a `SimulationInputError` naming the
field, so the CLI can exit 2 with a message instead of simulating something else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from fluidgate.controllers.spec import ControllerSpec, GateRule, RouterRule
from fluidgate.model import Cluster, IterationTime, WorkloadClass, mixed_gpu_count, service_rates
from fluidgate.simulator import _rules_shim as rules
from fluidgate.simulator.common import (
    C_LAMBDA,
    C_MU_M,
    C_MU_P,
    C_MU_S,
    C_OUTPUT,
    C_P_SOLO,
    C_PRICE_IN,
    C_PRICE_OUT,
    C_PROMPT,
    C_RANK,
    C_TARGET_Q,
    C_TARGET_X,
    C_THETA,
    C_W_DECODE,
    C_W_PREFILL,
    N_CCOL,
)

# Beyond these a run would not fit in memory or time on one machine; the message says so.
MAX_GPUS = 1_000_000
MAX_BATCH = 4096


class SimulationInputError(Exception):
    """A spec, trace or option the simulator cannot run; the message names the culprit."""


class Fidelity(StrEnum):
    CTMC = "ctmc"  # exponential service, exactly the fluid model's stochastic version
    ITERATION = "iteration"  # GPUs run iterations of the batch's actual duration


class PolicyName(StrEnum):
    """The controllers a run can use: the spec's own, DESIGN.md §4's, and the baselines."""

    SPEC = "spec"  # the gate and router the spec names
    GATE_AND_ROUTE = "gate-and-route"
    PRIORITIZE_AND_ROUTE = "prioritize-and-route"
    SLI_ROUTER = "sli-router"
    FI_WSP = "FI-WSP"  # FCFS admission, decode stays on its GPU, no planning (vLLM default)
    GI_WSP = "GI-WSP"  # the spec's gate, decode stays on its GPU, no planning
    GF_WSP = "GF-WSP"  # the spec's gate, decodes to any GPU (a prefill slot kept on all)
    FG_SP = "FG-SP"  # FCFS admission, solo-first router, static planning


BASELINES = (PolicyName.FI_WSP, PolicyName.GI_WSP, PolicyName.GF_WSP, PolicyName.FG_SP)

_GATES = {GateRule.OCCUPANCY_DEFICIT: rules.GATE_DEFICIT,
          GateRule.STATIC_PRIORITY: rules.GATE_PRIORITY}
_ROUTERS = {RouterRule.SOLO_FIRST: rules.ROUTE_SOLO_FIRST, RouterRule.SLI_SPLIT: rules.ROUTE_SLI}


@dataclass(frozen=True)
class Controller:
    gate: int
    router: int
    static_plan: bool


def controller_for(policy: PolicyName, spec: ControllerSpec) -> Controller:
    spec_gate = _GATES[spec.gate]
    table = {
        PolicyName.SPEC: Controller(spec_gate, _ROUTERS[spec.router], True),
        PolicyName.GATE_AND_ROUTE: Controller(rules.GATE_DEFICIT, rules.ROUTE_SOLO_FIRST, True),
        PolicyName.PRIORITIZE_AND_ROUTE: Controller(rules.GATE_PRIORITY, rules.ROUTE_SOLO_FIRST,
                                                    True),
        PolicyName.SLI_ROUTER: Controller(spec_gate, rules.ROUTE_SLI, True),
        PolicyName.FI_WSP: Controller(rules.GATE_FCFS, rules.ROUTE_STAY, False),
        PolicyName.GI_WSP: Controller(spec_gate, rules.ROUTE_STAY, False),
        PolicyName.GF_WSP: Controller(spec_gate, rules.ROUTE_ANY, False),
        PolicyName.FG_SP: Controller(rules.GATE_FCFS, rules.ROUTE_SOLO_FIRST, True),
    }
    return table[policy]


@dataclass(frozen=True)
class Instance:
    """The spec scaled to `gpus`: per-class arrays, the plan, and the cluster constants."""

    gpus: int
    max_batch: int
    mixed_gpus: int
    chunk: float
    alpha: float
    beta: float
    tau_solo: float
    cls: NDArray[np.float64]  # (K, N_CCOL), columns of common.C_*
    names: tuple[str, ...]

    @property
    def arrival_rate(self) -> float:
        return float(self.cls[:, C_LAMBDA].sum())

    def relaxation_time(self) -> float:
        """The longest mean time a request spends in one state: the warm-up scale."""
        tau = self.alpha + self.beta * self.chunk
        longest = 0.0
        for row in self.cls:
            parts = [row[C_PROMPT] * tau / self.chunk, row[C_OUTPUT] * tau]
            if row[C_THETA] > 0:
                parts.append(1.0 / row[C_THETA])
            longest = max(longest, *parts)
        return longest


def spec_cluster(spec: ControllerSpec) -> Cluster:
    c = spec.cluster
    return Cluster(c.gpus, c.max_batch, c.chunk,
                   IterationTime(c.alpha, c.beta, c.tau_solo, c.iteration_source))


def spec_classes(spec: ControllerSpec) -> tuple[WorkloadClass, ...]:
    return tuple(WorkloadClass(c.name, c.rate, c.prompt, c.output, c.patience, c.price_input,
                               c.price_output) for c in spec.classes)


def build_instance(spec: ControllerSpec, gpus: int | None = None) -> Instance:
    """The spec at `gpus` GPUs (default: the spec's own); targets scale with n."""
    n = spec.cluster.gpus if gpus is None else gpus
    if not 1 <= n <= MAX_GPUS:
        raise SimulationInputError(
            f"gpus: {n} is outside what the simulator runs (1 to {MAX_GPUS:,})")
    if spec.cluster.max_batch > MAX_BATCH:
        raise SimulationInputError(
            f"cluster.max_batch: {spec.cluster.max_batch} streams per GPU is more than the "
            f"simulator represents ({MAX_BATCH})")
    if not any(c.rate > 0 for c in spec.classes):
        raise SimulationInputError("classes: every class has rate 0; there is nothing to "
                                   "simulate")
    cluster = spec_cluster(spec)
    scale = n / spec.cluster.gpus
    mixed = mixed_gpu_count(n, spec.cluster.mixed_share)
    cls = np.zeros((len(spec.classes), N_CCOL))
    for i, (c, wc) in enumerate(zip(spec.classes, spec_classes(spec), strict=True)):
        r = service_rates(cluster, wc)
        if spec.pricing == "bundled":
            w_prefill, w_decode = 0.0, wc.bundled_price
        else:
            w_prefill, w_decode = wc.price_input * wc.prompt, wc.price_output * wc.output
        if c.p_solo > 0 and mixed == n and spec.router is RouterRule.SLI_SPLIT:
            raise SimulationInputError(
                f"classes[{i}].p_solo: {c.p_solo} of its decodes go to the solo pool, but the "
                f"plan has no solo GPUs at n = {n}")
        cls[i, C_LAMBDA] = n * c.rate
        cls[i, C_THETA] = wc.theta
        cls[i, C_MU_P], cls[i, C_MU_M], cls[i, C_MU_S] = r.mu_p, r.mu_m, r.mu_s
        cls[i, C_W_PREFILL], cls[i, C_W_DECODE] = w_prefill, w_decode
        cls[i, C_TARGET_X] = scale * c.targets.prefill
        cls[i, C_TARGET_Q] = scale * c.targets.prefill_queue
        cls[i, C_RANK] = c.priority
        cls[i, C_P_SOLO] = c.p_solo
        cls[i, C_PROMPT], cls[i, C_OUTPUT] = c.prompt, c.output
        cls[i, C_PRICE_IN], cls[i, C_PRICE_OUT] = c.price_input, c.price_output
    if not np.all(np.isfinite(cls)):
        raise SimulationInputError("classes: a service rate is not finite")
    return Instance(n, spec.cluster.max_batch, mixed, spec.cluster.chunk, spec.cluster.alpha,
                    spec.cluster.beta, spec.cluster.tau_solo, cls,
                    tuple(c.name for c in spec.classes))


def whole_tokens(spec: ControllerSpec) -> None:
    """The iteration level moves whole tokens: prompt, output and chunk must be integers."""
    if not float(spec.cluster.chunk).is_integer():
        raise SimulationInputError(
            f"cluster.chunk: {spec.cluster.chunk} is not a whole number of tokens; the "
            "iteration level prefills whole tokens")
    for i, c in enumerate(spec.classes):
        for field in ("prompt", "output"):
            value = getattr(c, field)
            if not float(value).is_integer() or not math.isfinite(value):
                raise SimulationInputError(
                    f"classes[{i}].{field}: {value} is not a whole number of tokens; the "
                    "iteration level moves whole tokens (use the ctmc level, or round it)")
