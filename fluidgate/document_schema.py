"""The published shape of the solution document (`fluidgate.solution/v1`), as a pydantic model.

`document.py` writes the document from a `Solution`; this model describes it, so
`fluidgate schema solution` prints a JSON Schema that programs can validate against. The tests
validate real documents (optimal, infeasible, with SLOs and soft SLOs) against it, so the two
cannot drift apart silently: a key added to the document and not here fails them, naming the
key. Unknown keys are rejected for the same reason.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from fluidgate.document import SCHEMA_ID as SCHEMA_ID  # the writer's: one id
from fluidgate.solvers.base import TerminationStatus

_DOC = ConfigDict(extra="forbid", allow_inf_nan=False)
Number = float | None  # null where the value is undefined (a ratio over nothing) or absent


class PolicyDoc(BaseModel):
    model_config = _DOC

    name: str
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the policy text")
    pricing: Literal["bundled", "separate"]
    objective: Literal["revenue", "throughput", "served"]


class SolverDoc(BaseModel):
    model_config = _DOC

    name: str
    message: str
    seconds: dict[str, float] = Field(description="time per stage (build, compile, solve, …)")


class UnitsDoc(BaseModel):
    model_config = _DOC

    objective: str
    time: str
    rate: str
    lp_variables: str


class ClusterDoc(BaseModel):
    model_config = _DOC

    gpus: int = Field(ge=1)
    max_batch: int
    chunk: float
    alpha: float
    beta: float
    tau_mix: float
    tau_solo: float
    gamma: float
    iteration_source: str
    mixed_share: float | None = Field(default=None, description="Σx*; only for a solved plan")
    mixed_gpus: int | None = Field(default=None, ge=0, description="⌈n·Σx*⌉")
    solo_gpus: int | None = Field(default=None, ge=0)


class ClassDoc(BaseModel):
    """LP values per GPU (x, y_m, y_s, q_p, q_d); operator quantities cluster-wide."""

    model_config = _DOC

    x: float
    y_m: float
    y_s: float
    q_p: float
    q_d: float
    arrivals: float
    admitted: float
    served: float
    abandonment: float
    wait: float
    ttft: Number
    tpot: Number
    p_solo: float = Field(ge=0, le=1)
    prefill_gpus: float
    decodes_mixed: float
    decodes_solo: float
    prefill_queue: float
    decode_queue: float


class SloDoc(BaseModel):
    model_config = _DOC

    label: str
    line: int | None
    soft: bool
    op: Literal["<=", ">=", "=="]
    value: Number
    bound: Number
    slack: Number
    binding: bool
    shadow_price: Number
    violation: Number
    display_unit: str
    display_scale: float


class VerificationDoc(BaseModel):
    model_config = _DOC

    row_residual: Number
    bound_violation: Number
    dual_infeasibility: Number
    gap: Number
    failures: list[str]


class ConflictSloDoc(BaseModel):
    model_config = _DOC

    label: str
    line: int | None
    conflict: int = Field(ge=1, description="which conflict (irreducible set) it belongs to")
    op: Literal["<=", ">=", "=="]
    bound: Number
    nearest_feasible_bound: Number = Field(
        description="base units; null when no bound on this line alone resolves the conflict")
    nearest_feasible_bound_display: str | None = Field(
        description="as printed: display unit, rounded outward so it is itself feasible")
    loosen_by: Number = Field(description="the elastic slack s, in base units")
    nearest_bound_verified: bool = Field(
        default=True, description="false when no solver configuration could verify the "
        "re-solve for this bound (then the bound is null)")
    display_unit: str
    display_scale: float


class ConflictDoc(BaseModel):
    model_config = _DOC

    conflicts: int = Field(ge=0)
    slos: list[ConflictSloDoc]
    bounds_with_other_conflicts_set_aside: bool = Field(
        description="nearest bounds were computed with the other conflicts' lines set aside")
    more_conflicts: bool = Field(
        description="the search stopped after 10 conflicts with lines still in conflict")
    traffic_exceeds_capacity: bool
    classes_without_patience: list[str]
    search_verified: bool = Field(
        default=True, description="false when a trial solve of the conflict search could not "
        "be verified; then no SLO is listed (the infeasibility itself is verified)")
    search_failure: str | None = Field(
        default=None, description="why the search could not be verified")


class SolutionDocument(BaseModel):
    """What `fluidgate solve --json` writes."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)

    schema_: Literal["fluidgate.solution/v1"] = Field(alias="schema")
    generator: str
    policy: PolicyDoc
    solver: SolverDoc
    status: TerminationStatus
    verified: bool
    objective: Number
    objective_cluster: Number
    revenue_rate: Number
    penalty: Number
    units: UnitsDoc
    cluster: ClusterDoc
    classes: dict[str, ClassDoc]
    slos: list[SloDoc]
    warnings: list[str]
    verification: VerificationDoc | None = None
    conflict: ConflictDoc | None = None
