"""The typed policy: what every stage after the parser reads.

Values are normalised to seconds, tokens, requests per second *per GPU* and money per token;
the language front end does the unit work so nothing downstream ever sees a unit. The derived
service rates of DESIGN.md §1 live here, in one place, so the formulation, the report and the
simulator cannot disagree about what `μ_p` means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from fluidgate.diagnostics import Span

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FloatArray = npt.NDArray[np.float64]

PricingMode = Literal["bundled", "separate"]


class Objective(StrEnum):
    REVENUE = "revenue"
    THROUGHPUT = "throughput"
    SERVED = "served"


class CurveForm(StrEnum):
    """The shapes an iteration-time curve takes (`calibration/curves.py` fits all but the
    first two; inline policies imply those)."""

    CONSTANT = "constant"  # τ = c0 (an inline τ_solo)
    AFFINE_IN_C = "affine-in-C"  # τ = c0 + c_chunk·C (an inline α + β·C)
    QUADRATIC_IN_C = "quadratic-in-C"  # + c_chunk2·C²
    AFFINE = "affine"  # solo: c + a·b; mixed: m0 + m_chunk·C + m_decode·b
    QUADRATIC = "quadratic"  # mixed: m0 + m_chunk·C + m_chunk2·C² + m_decode·b
    HINGE = "hinge"  # solo: c + a·max(0, b − b0)


# calibration coefficient name -> IterationCurve field, per form
_CURVE_TERMS: dict[CurveForm, dict[str, str]] = {
    CurveForm.CONSTANT: {"c": "c0"},
    CurveForm.AFFINE_IN_C: {"m0": "c0", "m_chunk": "c_chunk"},
    CurveForm.QUADRATIC_IN_C: {"m0": "c0", "m_chunk": "c_chunk", "m_chunk2": "c_chunk2"},
    CurveForm.AFFINE: {"c": "c0", "a": "c_batch", "m0": "c0", "m_chunk": "c_chunk",
                       "m_decode": "c_batch"},
    CurveForm.QUADRATIC: {"m0": "c0", "m_chunk": "c_chunk", "m_chunk2": "c_chunk2",
                          "m_decode": "c_batch"},
    CurveForm.HINGE: {"c": "c0", "a": "c_batch", "b0": "b0"},
}


def curve_time(c0: float, c_chunk: float, c_chunk2: float, c_batch: float, b0: float,
               chunk: float, batch: float) -> float:
    """`τ(C, b) = c0 + c_chunk·C + c_chunk2·C² + c_batch·max(0, b − b0)` seconds.

    Every `CurveForm` is this one expression with some coefficients at 0 (affine in b is the
    hinge at b0 = 0), so an iteration-level simulator can compile it once (plain floats in,
    a float out: `numba.njit` takes it as it is) and feed it `IterationCurve.coefficients`.
    """
    return c0 + c_chunk * chunk + c_chunk2 * chunk * chunk + c_batch * max(0.0, batch - b0)


@dataclass(frozen=True, slots=True)
class IterationCurve:
    """One iteration-time curve in seconds, as plain coefficients of `curve_time`."""

    form: CurveForm
    c0: float
    c_chunk: float = 0.0
    c_chunk2: float = 0.0
    c_batch: float = 0.0
    b0: float = 0.0

    @property
    def coefficients(self) -> tuple[float, float, float, float, float]:
        return (self.c0, self.c_chunk, self.c_chunk2, self.c_batch, self.b0)

    def time(self, chunk: float, batch: float) -> float:
        """Seconds per iteration carrying a `chunk`-token prefill chunk and `batch` decodes."""
        return curve_time(*self.coefficients, chunk, batch)

    @classmethod
    def from_fit(cls, form: str, coefficients: dict[str, float]) -> IterationCurve:
        """A calibration file's curve (`curves.solo` / `curves.mixed`); ValueError in words
        when the form or its coefficient names are not ones fluidgate fits."""
        try:
            kind = CurveForm(form)
        except ValueError:
            raise ValueError(f"unknown curve form {form!r}") from None
        terms = _CURVE_TERMS[kind]
        unknown = sorted(set(coefficients) - set(terms))
        if unknown or not coefficients:
            raise ValueError(f"form {form!r} has no coefficient(s) {', '.join(unknown)}"
                             if unknown else f"form {form!r} has no coefficients")
        return cls(kind, **{terms[k]: float(v) for k, v in coefficients.items()})


@dataclass(frozen=True, slots=True)
class IterationTime:
    """`τ_mix(C) = alpha + beta·C` seconds and `τ_solo` seconds, where the constants came from,
    and the full curves behind them for models finer than the LP's.

    `source` is `"inline"` or the path of the calibration file the policy referenced. The LP
    only needs the constants; an iteration-level simulator needs `τ_solo(b)` and `τ_mix(C, b)`
    (`solo_curve`, `mixed_curve`): the calibrated curves when the file has them, otherwise the
    flat and affine curves the constants imply.
    """

    alpha: float
    beta: float
    tau_solo: float
    source: str = "inline"
    calibrated_mixed: IterationCurve | None = None
    calibrated_solo: IterationCurve | None = None

    def tau_mix(self, chunk: float) -> float:
        return self.alpha + self.beta * chunk

    @property
    def gamma(self) -> float:
        return 1.0 / self.tau_solo

    @property
    def mixed_curve(self) -> IterationCurve:
        """`τ_mix(C, b)`: calibrated, or `α + β·C` whatever the batch."""
        if self.calibrated_mixed is not None:
            return self.calibrated_mixed
        return IterationCurve(CurveForm.AFFINE_IN_C, self.alpha, c_chunk=self.beta)

    @property
    def solo_curve(self) -> IterationCurve:
        """`τ_solo(b)` (chunk 0): calibrated, or the constant `τ_solo`."""
        if self.calibrated_solo is not None:
            return self.calibrated_solo
        return IterationCurve(CurveForm.CONSTANT, self.tau_solo)


@dataclass(frozen=True, slots=True)
class Cluster:
    gpus: int
    max_batch: int
    chunk: float
    iteration: IterationTime

    @property
    def tau(self) -> float:
        """Duration of a mixed iteration at the policy's chunk size."""
        return self.iteration.tau_mix(self.chunk)

    @property
    def gamma(self) -> float:
        """Decode iterations per second on a solo GPU."""
        return self.iteration.gamma


@dataclass(frozen=True, slots=True)
class WorkloadClass:
    """One kind of traffic. `rate` is per GPU; prices are per token after class overrides."""

    name: str
    rate: float
    prompt: float
    output: float
    patience: float | None
    price_input: float
    price_output: float
    weight: float = 1.0
    span: Span | None = field(default=None, compare=False)

    @property
    def theta(self) -> float:
        """Abandonment rate; a class without patience never leaves."""
        return 0.0 if self.patience is None else 1.0 / self.patience

    @property
    def bundled_price(self) -> float:
        """`w_i`: what one completed request pays under bundled pricing."""
        return self.price_input * self.prompt + self.price_output * self.output


@dataclass(frozen=True, slots=True)
class Rates:
    """Per-request service rates of DESIGN.md §1 for one class on one cluster."""

    mu_p: float
    mu_m: float
    mu_s: float


def rate_terms(cluster: Cluster, prompt: Any, output: Any) -> tuple[Any, Any, Any]:
    """`μ_p = C/(P·τ)`, `μ_m = 1/(O·τ)`, `μ_s = γ/O`: of one class (floats) or of many at
    once (numpy arrays, elementwise). Both go through these same float operations, so a
    class's rates are the same bits whichever way they were computed."""
    tau = cluster.tau
    return cluster.chunk / (prompt * tau), 1.0 / (output * tau), cluster.gamma / output


def service_rates(cluster: Cluster, cls: WorkloadClass) -> Rates:
    mu_p, mu_m, mu_s = rate_terms(cluster, cls.prompt, cls.output)
    return Rates(mu_p=mu_p, mu_m=mu_m, mu_s=mu_s)


@dataclass(frozen=True)
class ClassVectors:
    """A policy's classes as numpy columns (entry i is `policy.classes[i]`), with their
    service rates.

    Building, scaling and reading back the LP of 50,000 classes one `WorkloadClass` at a
    time cost several times the solve itself; these columns let that work run elementwise,
    through the same formulas (`rate_terms`, the metrics) and so to the same bits.
    """

    rate: FloatArray
    prompt: FloatArray
    output: FloatArray
    theta: FloatArray  # 0 for a class without patience
    price_input: FloatArray
    price_output: FloatArray
    weight: FloatArray
    mu_p: FloatArray
    mu_m: FloatArray
    mu_s: FloatArray

    @classmethod
    def of(cls, policy: Policy) -> ClassVectors:
        import numpy as np

        classes = policy.classes

        def column(values: list[float]) -> FloatArray:
            return np.array(values, dtype=np.float64)

        prompt = column([c.prompt for c in classes])
        output = column([c.output for c in classes])
        mu_p, mu_m, mu_s = rate_terms(policy.cluster, prompt, output)
        return cls(
            rate=column([c.rate for c in classes]), prompt=prompt, output=output,
            theta=column([c.theta for c in classes]),
            price_input=column([c.price_input for c in classes]),
            price_output=column([c.price_output for c in classes]),
            weight=column([c.weight for c in classes]),
            mu_p=mu_p, mu_m=mu_m, mu_s=mu_s)

    @property
    def bundled_price(self) -> FloatArray:
        """`w_i` of every class (`WorkloadClass.bundled_price`, elementwise)."""
        return self.price_input * self.prompt + self.price_output * self.output

    def rates(self) -> list[Rates]:
        """The same rates as `service_rates` gives class by class."""
        return [Rates(p, m, s) for p, m, s in zip(self.mu_p.tolist(), self.mu_m.tolist(),
                                                 self.mu_s.tolist(), strict=True)]


# --- service-level constraints, as checked expression trees -------------------------------

Op = Literal["<=", ">=", "=="]


@dataclass(frozen=True, slots=True)
class Const:
    """A literal, normalised to base units (cluster-wide for rates and money)."""

    value: float
    span: Span | None = None


@dataclass(frozen=True, slots=True)
class MetricRef:
    """A metric applied to one class (or to no class); `all` has already been expanded."""

    name: str
    arg: str | None
    span: Span | None = None


@dataclass(frozen=True, slots=True)
class BinOp:
    op: Literal["+", "-", "*", "/"]
    left: Expr
    right: Expr
    span: Span | None = None


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Expr
    span: Span | None = None


Expr = Const | MetricRef | BinOp | Neg


@dataclass(frozen=True, slots=True)
class SloConstraint:
    """One line of the `slo` block (one per class when the source said `all`)."""

    label: str
    lhs: Expr
    op: Op
    rhs: Expr
    soft: bool = False
    penalty: float = 0.0
    text: str = ""
    span: Span | None = None
    unit: str = ""  # display unit of the constraint's sides, e.g. "ms"
    unit_scale: float = 1.0  # base units per display unit


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    cluster: Cluster
    pricing: PricingMode
    classes: tuple[WorkloadClass, ...]
    objective: Objective = Objective.REVENUE
    slos: tuple[SloConstraint, ...] = ()
    source_file: str = "<memory>"
    source_text: str = ""
    class_tables: tuple[str, ...] = ()  # files named by `classes from`, as read

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

