"""The controller spec (`fluidgate.controller/v2`): the one document that leaves the solver.

Everything downstream — the runtime gate and router, the exporters, the simulator, the
harness — reads this document and nothing else (DESIGN.md §5), so it carries every number
they need in cluster-wide units and says where it came from (policy hash, solver, version).
Loading is strict: a spec is configuration for production traffic, so a missing field, a
NaN, a string where a number belongs or a negative GPU count is an error in words, never
something coerced quietly. Follows the pattern of `calibration/schema.py`.

Version 2 added `classification` (how a gateway tells a request's class). A v1 document is
still read: it is the same document without that block, so it gets the default (the class
header, else the nearest class), and it is written back as v2.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fluidgate.model import CurveForm
from fluidgate.versioned import parse_document, problems

SCHEMA_ID = "fluidgate.controller/v2"
SCHEMA_V1 = "fluidgate.controller/v1"  # still read; see the module docstring
CLASS_HEADER = "X-Fluidgate-Class"  # names the class outright; wins over every rule

# A spec is read by machines in production: unknown keys are typos, not extensions.
_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class SpecError(Exception):
    """A controller spec that cannot be used; the message names the field and the problem."""


class GateRule(StrEnum):
    """How a free prefill slot picks the class to admit (see the runtime gate)."""

    OCCUPANCY_DEFICIT = "occupancy-deficit"  # bundled: smallest (X_i − n·x_i*)/x_i* first
    STATIC_PRIORITY = "static-priority"  # separate: largest D_i/P_i first (the `priority` rank)


class RouterRule(StrEnum):
    """Where a finished prefill's decode goes (see the runtime router)."""

    SOLO_FIRST = "solo-first"  # free solo slot, else free mixed slot, else one FCFS buffer
    SLI_SPLIT = "sli-split"  # solo pool with probability p_solo, each pool with its own buffer


class Fallback(StrEnum):
    """What a request that no rule matches (and that names no class) becomes."""

    NEAREST = "nearest"  # the class nearest in log(prompt, output) (output: max_tokens if given)
    REJECT = "reject"  # refused: 400 with a JSON error saying it matches no class


class TokenRange(BaseModel):
    """`min ≤ tokens < max`, whole tokens; a missing end is open."""

    model_config = _STRICT

    min: int | None = Field(default=None, ge=0, description="inclusive; null: no lower end")
    max: int | None = Field(default=None, ge=1, description="exclusive; null: no upper end")

    @model_validator(mode="after")
    def _ordered(self) -> TokenRange:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        return self

    def holds(self, tokens: int) -> bool:
        return ((self.min is None or tokens >= self.min)
                and (self.max is None or tokens < self.max))


class HeaderMatch(BaseModel):
    """A request header with one of these values (names compare without case, values
    exactly)."""

    model_config = _STRICT

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="an HTTP header name")
    values: list[str] = Field(min_length=1)


class ClassRule(BaseModel):
    """A request belongs to `class` when every condition given holds (at least one)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True,
                              populate_by_name=True)

    class_: str = Field(alias="class", min_length=1, description="a class name of `classes`")
    models: list[str] | None = Field(default=None, min_length=1,
                                     description="the body's `model` is one of these")
    header: HeaderMatch | None = None
    prompt_tokens: TokenRange | None = Field(default=None,
                                             description="the prompt's length in tokens")

    @model_validator(mode="after")
    def _has_a_condition(self) -> ClassRule:
        if self.models is None and self.header is None and self.prompt_tokens is None:
            raise ValueError("a rule needs at least one of models, header, prompt_tokens "
                             "(for a default class, use the fallback)")
        return self


class ClassificationSpec(BaseModel):
    """How a request's class is told: the `X-Fluidgate-Class` header when present, else the
    first rule that matches, else the fallback."""

    model_config = _STRICT

    rules: list[ClassRule] = Field(default_factory=list, description="tried in order")
    fallback: Fallback = Fallback.NEAREST
    reason: str = Field(default="", description="why the builder chose these rules")


class PolicySource(BaseModel):
    model_config = _STRICT

    name: str
    path: str = Field(description="the policy file as given on the command line")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the policy text")


class SolverInfo(BaseModel):
    model_config = _STRICT

    name: str
    status: Literal["optimal"] = Field(description="only a solved, verified plan becomes a spec")
    message: str = ""


class CurveSpec(BaseModel):
    """An iteration-time curve, seconds: `c0 + c_chunk·C + c_chunk2·C² + c_batch·max(0, b − b0)`
    for a chunk of C prompt tokens and b decodes (`model.curve_time`)."""

    model_config = _STRICT

    form: CurveForm
    c0: float
    c_chunk: float
    c_chunk2: float
    c_batch: float
    b0: float


class IterationCurvesSpec(BaseModel):
    """The curves behind `tau_mix` and `tau_solo`, for models finer than the LP's."""

    model_config = _STRICT

    mixed: CurveSpec = Field(description="τ_mix(C, b): an iteration with a prefill chunk")
    solo: CurveSpec = Field(description="τ_solo(b): a decode-only iteration (C = 0)")


class ClusterPlanSpec(BaseModel):
    """The static plan: `mixed_gpus = ⌈n·Σx*⌉` keep one prefill slot, the rest only decode."""

    model_config = _STRICT

    gpus: int = Field(ge=1, description="n, GPUs in the cluster")
    max_batch: int = Field(ge=2, description="B, decode streams per GPU")
    chunk: float = Field(gt=0, description="C, prefill tokens per mixed iteration")
    alpha: float = Field(gt=0, description="mixed-iteration intercept, s")
    beta: float = Field(ge=0, description="mixed-iteration slope, s per chunk token")
    tau_mix: float = Field(gt=0, description="τ = α + β·C, s per mixed iteration")
    tau_solo: float = Field(gt=0, description="s per decode-only iteration")
    gamma: float = Field(gt=0, description="1/τ_solo, decode iterations per second")
    iteration_source: str = Field(description="'inline' or the calibration file used")
    mixed_share: float = Field(ge=0, le=1, description="Σx*, share of GPUs prefilling")
    mixed_gpus: int = Field(ge=0, description="M = ⌈n·Σx*⌉")
    solo_gpus: int = Field(ge=0, description="n − M")
    curves: IterationCurvesSpec | None = Field(
        default=None, description="the calibrated curves (or those alpha, beta and tau_solo "
        "imply); absent: use α + β·C and a flat τ_solo")

    @model_validator(mode="after")
    def _pools_add_up(self) -> ClusterPlanSpec:
        if self.mixed_gpus + self.solo_gpus != self.gpus:
            raise ValueError(
                f"mixed_gpus ({self.mixed_gpus}) + solo_gpus ({self.solo_gpus}) must equal "
                f"gpus ({self.gpus})"
            )
        return self


class ClassTargets(BaseModel):
    """The LP optimum, cluster-wide (`n·x*`, …): what the runtime gate steers towards."""

    model_config = _STRICT

    prefill: float = Field(ge=0, description="n·x*, GPUs prefilling this class")
    decodes_mixed: float = Field(ge=0, description="n·y_m*, decodes on mixed GPUs")
    decodes_solo: float = Field(ge=0, description="n·y_s*, decodes on solo GPUs")
    prefill_queue: float = Field(ge=0, description="n·q_p*, requests waiting for prefill")
    decode_queue: float = Field(ge=0, description="n·q_d*, prefilled requests waiting to decode")


class ClassPrediction(BaseModel):
    """What the plan predicts for this class (fluid-model means), cluster-wide."""

    model_config = _STRICT

    arrivals: float = Field(ge=0, description="requests/s")
    admitted: float = Field(ge=0, description="prefill completions, requests/s")
    served: float = Field(ge=0, description="completed requests/s")
    abandonment: float = Field(ge=0, le=1, description="share of arrivals that leave")
    wait: float = Field(ge=0, description="mean wait for prefill, s")
    ttft: float | None = Field(ge=0, description="mean time to first token, s")
    tpot: float | None = Field(ge=0, description="mean time per output token, s")


class ClassSpec(BaseModel):
    model_config = _STRICT

    name: str = Field(min_length=1)
    rate: float = Field(ge=0, description="arrivals per GPU, requests/s")
    prompt: float = Field(gt=0, description="P, prompt tokens")
    output: float = Field(gt=0, description="D, output tokens")
    patience: float | None = Field(gt=0, description="mean patience, s; null: never leaves")
    price_input: float = Field(ge=0, description="money per prompt token")
    price_output: float = Field(ge=0, description="money per output token")
    priority: int = Field(ge=1, description="rank, 1 admitted first (static-priority gate, "
                                            "and the order exported to serving stacks)")
    p_solo: float = Field(ge=0, le=1, description="share of decodes routed to the solo pool")
    targets: ClassTargets
    predicted: ClassPrediction


class SloSpec(BaseModel):
    model_config = _STRICT

    label: str
    line: int | None = Field(ge=1)
    soft: bool
    op: Literal["<=", ">=", "=="]
    bound: float | None
    value: float | None
    binding: bool
    shadow_price: float | None = Field(description="objective per GPU per s, per unit of bound")
    violation: float | None = Field(default=None, ge=0,
                                    description="soft SLOs: how far the plan misses the bound")
    unit: str = Field(description="display unit of bound and value ('' for base units)")
    unit_scale: float = Field(gt=0, description="base units per display unit")


class ControllerSpec(BaseModel):
    """The gate-and-route controller for one policy on one cluster."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True,
                              populate_by_name=True)

    schema_: Literal["fluidgate.controller/v2"] = Field(alias="schema")
    generator: str = Field(description="the fluidgate version that wrote it")
    policy: PolicySource
    solver: SolverInfo
    pricing: Literal["bundled", "separate"]
    objective: Literal["revenue", "throughput", "served"]
    r_star: float = Field(description="optimal objective per GPU per s (penalties subtracted)")
    revenue_rate: float = Field(description="money per GPU per s earned by the plan")
    cluster: ClusterPlanSpec
    gate: GateRule
    router: RouterRule
    router_reason: str = Field(default="", description="why the builder chose this router")
    classes: list[ClassSpec] = Field(min_length=1)
    classification: ClassificationSpec = Field(
        default_factory=ClassificationSpec, description="how a gateway tells a request's "
        "class; absent (as in v1): the class header, else the nearest class")
    slos: list[SloSpec] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _read_v1(cls, data: Any) -> Any:
        """A v1 document is this one without `classification` (module docstring)."""
        if isinstance(data, dict) and data.get("schema") == SCHEMA_V1:
            if "classification" in data:
                raise ValueError(f"classification needs schema '{SCHEMA_ID}', not "
                                 f"'{SCHEMA_V1}'")
            data = {**data, "schema": SCHEMA_ID}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ControllerSpec:
        names = [c.name for c in self.classes]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"class names must be unique; repeated: {', '.join(dup)}")
        ranks = sorted(c.priority for c in self.classes)
        if ranks != list(range(1, len(ranks) + 1)):
            raise ValueError("class priorities must be the ranks 1..K, each once")
        for j, rule in enumerate(self.classification.rules):
            if rule.class_ not in names:
                raise ValueError(f"classification.rules[{j}] names class {rule.class_!r}, "
                                 f"which is not one of the classes ({', '.join(names)})")
        return self

    def class_index(self, name: str) -> int:
        for i, c in enumerate(self.classes):
            if c.name == name:
                return i
        raise KeyError(name)


def dump_spec(spec: ControllerSpec) -> str:
    """The JSON text of a spec; `dump_spec(parse_spec(dump_spec(s)))` gives the same bytes."""
    payload = spec.model_dump(mode="json", by_alias=True)
    return json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def parse_spec(text: str, origin: str = "<spec>") -> ControllerSpec:
    """Validate a spec's JSON text; every failure is a `SpecError` naming the field."""
    return parse_document(text, ControllerSpec, (SCHEMA_ID, SCHEMA_V1), origin=origin,
                          what="controller spec", error=SpecError)


def load_spec(path: str | Path) -> ControllerSpec:
    """Read (bounded, regular files only) and validate a spec file; every failure is a
    `SpecError` in words."""
    from fluidgate.reads import InputKind, ReadError, read_text_input

    try:
        text = read_text_input(path, InputKind.SPEC)
    except ReadError as exc:
        raise SpecError(str(exc)) from None
    return parse_spec(text, str(path))


def spec_from_payload(payload: dict[str, Any], origin: str = "<spec>") -> ControllerSpec:
    """Validate a spec built in Python (the builder's); `SpecError` naming the field."""
    try:
        return ControllerSpec.model_validate(payload)
    except ValidationError as exc:
        raise SpecError(f"{origin}: invalid controller spec: {problems(exc)}") from None


def write_spec(spec: ControllerSpec, path: str | Path,
               inputs: Sequence[str | Path] = ()) -> Path | None:
    """Write under `fluidgate.atomic`'s rules (atomic, never over one of `inputs`)."""
    from fluidgate.atomic import write_output

    return write_output(path, dump_spec(spec), inputs=inputs)
