"""What one simulation run is: the controller spec's numbers as the arrays the loops read.

The simulator reads the controller spec and nothing else (DESIGN.md §5). A spec it cannot
represent is refused here, before any loop runs, with a `SimulationInputError` naming the
field, so the CLI can exit 2 with a message instead of simulating something else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from fluidgate.controllers.plan import mixed_gpu_count
from fluidgate.controllers.spec import ControllerSpec, GateRule, RouterRule
from fluidgate.model import (
    Cluster,
    IterationCurve,
    IterationTime,
    Policy,
    WorkloadClass,
    service_rates,
)
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
    C_TARGET_QD,
    C_TARGET_X,
    C_THETA,
    C_W_DECODE,
    C_W_PREFILL,
    N_CCOL,
)
from fluidgate.simulator.names import PolicyName

# Beyond these a run would not fit in memory or time on one machine; the message says so.
MAX_GPUS = 1_000_000
MAX_BATCH = 4096


class SimulationInputError(Exception):
    """A spec, trace or option the simulator cannot run; the message names the culprit."""


BASELINES = (PolicyName.FI_WSP, PolicyName.GI_WSP, PolicyName.GF_WSP, PolicyName.FG_SP)


@dataclass(frozen=True)
class Controller:
    gate: int  # baselines.GateKind
    router: int  # baselines.RouterKind
    mixed_gpus: int  # M: GPUs with a prefill slot (n when the policy does not plan)


def controller_for(policy: PolicyName, spec: ControllerSpec) -> Controller:
    """The gate, router and pools of `policy` on `spec`'s cluster, from `baselines.plan_for`."""
    from fluidgate.controllers import baselines

    runtime_name = {
        PolicyName.GATE_AND_ROUTE: baselines.PolicyName.GATE_AND_ROUTE,
        PolicyName.PRIORITIZE_AND_ROUTE: baselines.PolicyName.GATE_AND_ROUTE,
        PolicyName.SLI_ROUTER: baselines.PolicyName.GATE_AND_ROUTE,
        PolicyName.FI_WSP: baselines.PolicyName.FI_WSP,
        PolicyName.GI_WSP: baselines.PolicyName.GI_WSP,
        PolicyName.GF_WSP: baselines.PolicyName.GF_WSP,
        PolicyName.FG_SP: baselines.PolicyName.FG_SP,
    }[policy]
    if policy is PolicyName.PRIORITIZE_AND_ROUTE:
        spec = spec.model_copy(update={"gate": GateRule.STATIC_PRIORITY})
    elif policy is PolicyName.SLI_ROUTER:
        spec = spec.model_copy(update={"router": RouterRule.SLI_SPLIT})
    plan = baselines.plan_for(runtime_name, spec)
    return Controller(int(plan.gate), int(plan.router), plan.mixed_gpus)


def spec_at(spec: ControllerSpec, gpus: int) -> ControllerSpec:
    """The same plan on `gpus` GPUs: the cluster-wide numbers (targets, and the predicted
    arrival, admission and service rates) scale with n, `M = ⌈n·Σx*⌉` is recomputed; the
    per-request ones (abandonment share, wait, TTFT, TPOT) stay."""
    if not 1 <= gpus <= MAX_GPUS:
        raise SimulationInputError(
            f"gpus: {gpus} is outside what the simulator runs (1 to {MAX_GPUS:,})")
    if gpus == spec.cluster.gpus:
        return spec
    scale = gpus / spec.cluster.gpus
    mixed = mixed_gpu_count(gpus, spec.cluster.mixed_share)
    cluster = spec.cluster.model_copy(update={"gpus": gpus, "mixed_gpus": mixed,
                                              "solo_gpus": gpus - mixed})
    classes = [c.model_copy(update={
        "targets": c.targets.model_copy(update={
            f: getattr(c.targets, f) * scale for f in type(c.targets).model_fields}),
        "predicted": c.predicted.model_copy(update={
            f: getattr(c.predicted, f) * scale for f in ("arrivals", "admitted", "served")})})
        for c in spec.classes]
    return spec.model_copy(update={"cluster": cluster, "classes": classes})


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


def spec_curves(spec: ControllerSpec) -> tuple[IterationCurve, IterationCurve] | None:
    """The (solo, mixed) iteration curves the spec carries, if any."""
    curves = spec.cluster.curves
    if curves is None:
        return None
    return tuple(IterationCurve(c.form, c.c0, c.c_chunk, c.c_chunk2, c.c_batch, c.b0)
                 for c in (curves.solo, curves.mixed))  # type: ignore[return-value]


def spec_policy(spec: ControllerSpec) -> Policy:
    """The spec as the typed policy the metrics module reads (no SLOs: only the model)."""
    return Policy(spec.policy.name, spec_cluster(spec), spec.pricing, spec_classes(spec))


def build_instance(spec: ControllerSpec) -> Instance:
    """The spec's numbers as arrays (call on `spec_at(spec, n)` for another cluster size)."""
    n = spec.cluster.gpus
    if spec.cluster.max_batch > MAX_BATCH:
        raise SimulationInputError(
            f"cluster.max_batch: {spec.cluster.max_batch} streams per GPU is more than the "
            f"simulator represents ({MAX_BATCH})")
    if not any(c.rate > 0 for c in spec.classes):
        raise SimulationInputError("classes: every class has rate 0; there is nothing to "
                                   "simulate")
    cluster = spec_cluster(spec)
    mixed = spec.cluster.mixed_gpus
    cls = np.zeros((len(spec.classes), N_CCOL))
    for i, (c, wc) in enumerate(zip(spec.classes, spec_classes(spec), strict=True)):
        r = service_rates(cluster, wc)
        if spec.pricing == "bundled":
            w_prefill, w_decode = 0.0, wc.bundled_price
        else:
            w_prefill, w_decode = wc.price_input * wc.prompt, wc.price_output * wc.output
        cls[i, C_LAMBDA] = n * c.rate
        cls[i, C_THETA] = wc.theta
        cls[i, C_MU_P], cls[i, C_MU_M], cls[i, C_MU_S] = r.mu_p, r.mu_m, r.mu_s
        cls[i, C_W_PREFILL], cls[i, C_W_DECODE] = w_prefill, w_decode
        cls[i, C_TARGET_X] = c.targets.prefill
        cls[i, C_TARGET_Q] = c.targets.prefill_queue
        cls[i, C_TARGET_QD] = c.targets.decode_queue
        cls[i, C_RANK] = c.priority
        cls[i, C_P_SOLO] = c.p_solo
        cls[i, C_PROMPT], cls[i, C_OUTPUT] = c.prompt, c.output
        cls[i, C_PRICE_IN], cls[i, C_PRICE_OUT] = c.price_input, c.price_output
    if not np.all(np.isfinite(cls)):
        raise SimulationInputError("classes: a service rate is not finite")
    return Instance(n, spec.cluster.max_batch, mixed, spec.cluster.chunk, spec.cluster.alpha,
                    spec.cluster.beta, spec.cluster.tau_solo, cls,
                    tuple(c.name for c in spec.classes))


def check_routable(spec: ControllerSpec, ctl: Controller) -> None:
    """The SLI router sends a fixed share of each class to each pool: both must exist."""
    from fluidgate.controllers.baselines import RouterKind

    if ctl.router != RouterKind.SLI:
        return
    n = spec.cluster.gpus
    for i, c in enumerate(spec.classes):
        if c.rate > 0 and c.p_solo > 0 and ctl.mixed_gpus == n:
            raise SimulationInputError(
                f"classes[{i}].p_solo: {c.p_solo:g} of its decodes go to the solo pool, but "
                f"the plan has no solo GPUs at n = {n}")
        if c.rate > 0 and c.p_solo < 1 and ctl.mixed_gpus == 0:
            raise SimulationInputError(
                f"classes[{i}].p_solo: {1 - c.p_solo:g} of its decodes go to the mixed pool, "
                f"but the plan has no mixed GPUs at n = {n}")


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
