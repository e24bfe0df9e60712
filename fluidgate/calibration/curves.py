"""Relative-error least squares for the iteration-time curves, with honest uncertainty.

Iteration times span two orders of magnitude (a 40 ms decode step, a 4 s prefill), so an
absolute-error fit would let the slowest batch decide everything; weighting each residual by
1/y makes every batch count by its *relative* miss, which is what the LP's rates feel.
Coefficient intervals come from the weighted least-squares covariance with the residual
variance estimated from the data and Student-t quantiles, so they are trustworthy with the
handful of points a calibration sweep has. Candidate forms are compared by AICc, which
charges each extra coefficient, so a hinge or a C² term is only kept when the data ask for it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import MappingProxyType

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]

# Relative residuals below this are rounding noise: without a floor, two exact fits would be
# ranked by the log of their round-off and the needless C² term could win.
RESIDUAL_FLOOR = 1e-9
# The outlier test needs enough other points to judge scatter by; with fewer, a real bend at
# the end of a short sweep would be thrown away as an "outlier".
MIN_OUTLIER_DOF = 4


@dataclass(frozen=True)
class Form:
    """A curve family: coefficient names, a readable formula, and how to evaluate it."""

    curve: str
    name: str
    formula: str
    names: tuple[str, ...]
    evaluate: Callable[[Array, Array, Array], Array]  # (params, b, chunk) -> seconds
    design: Callable[[Array, Array], Array] | None = None  # linear forms only


def _linear(
    columns: Callable[[Array, Array], list[Array]],
) -> tuple[Callable[[Array, Array, Array], Array], Callable[[Array, Array], Array]]:
    def design(b: Array, chunk: Array) -> Array:
        return np.column_stack(columns(np.asarray(b, float), np.asarray(chunk, float)))

    def evaluate(params: Array, b: Array, chunk: Array) -> Array:
        b_arr, c_arr = np.broadcast_arrays(np.asarray(b, float), np.asarray(chunk, float))
        return np.asarray(design(b_arr.ravel(), c_arr.ravel()) @ params).reshape(b_arr.shape)

    return evaluate, design


def _hinge(params: Array, b: Array, chunk: Array) -> Array:
    c, a, b0 = params
    return np.asarray(c + a * np.maximum(0.0, np.asarray(b, float) - b0), dtype=float)


def _make_forms() -> dict[str, Form]:
    ones = np.ones_like
    specs: list[tuple[str, str, str, tuple[str, ...], Callable[[Array, Array], list[Array]]]] = [
        ("solo", "affine", "τ_solo(b) = c + a·b", ("c", "a"), lambda b, C: [ones(b), b]),
        (
            "mix",
            "affine",
            "τ_mix(C, b) = m0 + m_chunk·C + m_decode·b",
            ("m0", "m_chunk", "m_decode"),
            lambda b, C: [ones(C), C, b],
        ),
        (
            "mix",
            "quadratic",
            "τ_mix(C, b) = m0 + m_chunk·C + m_chunk2·C² + m_decode·b",
            ("m0", "m_chunk", "m_chunk2", "m_decode"),
            lambda b, C: [ones(C), C, C**2, b],
        ),
        (
            "mix",
            "affine-in-C",
            "τ_mix(C) = m0 + m_chunk·C",
            ("m0", "m_chunk"),
            lambda b, C: [ones(C), C],
        ),
        (
            "mix",
            "quadratic-in-C",
            "τ_mix(C) = m0 + m_chunk·C + m_chunk2·C²",
            ("m0", "m_chunk", "m_chunk2"),
            lambda b, C: [ones(C), C, C**2],
        ),
    ]
    forms = {}
    for curve, name, formula, names, columns in specs:
        evaluate, design = _linear(columns)
        forms[f"{curve}:{name}"] = Form(curve, name, formula, names, evaluate, design)
    forms["solo:hinge"] = Form(
        "solo", "hinge", "τ_solo(b) = c + a·max(0, b − b0)", ("c", "a", "b0"), _hinge
    )
    return forms


FORMS: MappingProxyType[str, Form] = MappingProxyType(_make_forms())


@dataclass(frozen=True)
class CurveResult:
    """A fitted curve and everything a reviewer needs to judge it."""

    form: Form
    values: Array
    cov: Array
    b: Array
    chunk: Array
    y: Array
    identifiable: bool
    aicc: float
    selection: str = ""
    dropped: tuple[tuple[float, float, float], ...] = ()  # (b, chunk, seconds) left out

    @property
    def n(self) -> int:
        return int(self.y.size)

    @property
    def dof(self) -> int:
        return self.n - len(self.values)

    def predict(self, b: Array | float, chunk: Array | float = 0.0) -> Array:
        return self.form.evaluate(self.values, np.asarray(b, float), np.asarray(chunk, float))

    @property
    def rel_residuals(self) -> Array:
        return np.asarray((self.predict(self.b, self.chunk) - self.y) / self.y)

    @property
    def r2(self) -> float:
        """Ordinary R² on the seconds scale: the figure papers quote (DESIGN.md's 0.998)."""
        resid = self.y - self.predict(self.b, self.chunk)
        return _r2(float(resid @ resid), float(((self.y - self.y.mean()) ** 2).sum()))

    @property
    def r2_relative(self) -> float:
        """R² of the quantity minimised: relative residuals against a weighted constant."""
        w = 1.0 / self.y
        mean = (self.y * w**2).sum() / (w**2).sum()
        r = self.rel_residuals
        return _r2(float(r @ r), float((((self.y - mean) * w) ** 2).sum()))

    def coefficients(self) -> dict[str, float]:
        return {k: float(v) for k, v in zip(self.form.names, self.values, strict=True)}

    def ci95(self) -> dict[str, tuple[float, float]]:
        """Student-t intervals; empty when the residual variance or the design cannot give one."""
        if not self.identifiable or self.dof < 1:
            return {}
        half = t_quantile(self.dof) * np.sqrt(np.clip(np.diag(self.cov), 0.0, None))
        return {
            name: (float(v - h), float(v + h))
            for name, v, h in zip(self.form.names, self.values, half, strict=True)
            if np.isfinite(h)
        }


def _r2(ss_res: float, ss_tot: float) -> float:
    if ss_tot <= 0.0:
        return 1.0 if ss_res <= 1e-30 else 0.0
    return 1.0 - ss_res / ss_tot


def t_quantile(dof: int, level: float = 0.95) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2.0, dof))


def aicc(rel_resid: Array, k: int) -> float:
    """Small-sample AIC on relative residuals; +inf when there are too few points to compare."""
    n = rel_resid.size
    if n - k - 1 <= 0:
        return float("inf")
    rss = max(float(rel_resid @ rel_resid), n * RESIDUAL_FLOOR**2)
    return n * float(np.log(rss / n)) + 2 * k + 2 * k * (k + 1) / (n - k - 1)


def _wls(design: Array, y: Array) -> tuple[Array, Array, bool]:
    """Weighted least squares with weights 1/y; columns are scaled so C² stays well conditioned."""
    xw = design / y[:, None]
    scale = np.abs(xw).max(axis=0)
    scale[scale == 0] = 1.0
    xs = xw / scale
    coef, _, rank, _ = np.linalg.lstsq(xs, np.ones_like(y), rcond=None)
    values = coef / scale
    resid = xw @ values - 1.0
    dof = y.size - design.shape[1]
    s2 = float(resid @ resid) / dof if dof > 0 else float("nan")
    identifiable = rank == design.shape[1]
    inv = np.linalg.pinv(xs.T @ xs)
    cov = s2 * inv / np.outer(scale, scale)
    return values, cov, identifiable


def fit_linear(form: Form, b: Array, chunk: Array, y: Array) -> CurveResult:
    assert form.design is not None
    values, cov, ok = _wls(form.design(b, chunk), y)
    rel = (form.evaluate(values, b, chunk) - y) / y
    return CurveResult(form, values, cov, b, chunk, y, ok, aicc(rel, len(values)))


def fit_hinge(b: Array, y: Array) -> CurveResult:
    """Profile the changepoint: for a fixed b0 the hinge is linear, so scan each data gap."""
    from scipy.optimize import minimize_scalar

    form = FORMS["solo:hinge"]
    zeros = np.zeros_like(b)
    knots = np.unique(b)

    u = 1.0 / y

    def profile(b0: float) -> tuple[float, Array]:
        # Two-coefficient weighted least squares in closed form: this runs hundreds of times.
        v = np.maximum(0.0, b - b0) * u
        suu, suv, svv = float(u @ u), float(u @ v), float(v @ v)
        su, sv = float(u.sum()), float(v.sum())
        det = suu * svv - suv * suv
        if det > 1e-12 * suu * max(svv, 1e-300):
            c, a = (svv * su - suv * sv) / det, (suu * sv - suv * su) / det
        else:
            c, a = su / suu, 0.0
        r = c * u + a * v - 1.0
        return float(r @ r), np.array([c, a], dtype=np.float64)

    best = (np.inf, float(knots[0]))
    for lo, hi in itertools.pairwise(knots):
        candidates = [float(lo), float(hi)]
        found = minimize_scalar(
            lambda x: profile(x)[0],
            bounds=(float(lo), float(hi)),
            method="bounded",
            options={"xatol": 1e-9 * float(hi)},
        )
        candidates.append(float(found.x))
        for b0 in candidates:
            rss = profile(b0)[0]
            if rss < best[0] - 1e-15:
                best = (rss, b0)
    b0 = best[1]
    c, a = profile(b0)[1]
    values: Array = np.array([c, a, b0], dtype=np.float64)
    jac = _hinge_jacobian(b, y, a, b0)
    rel = (form.evaluate(values, b, zeros) - y) / y
    dof = b.size - 3
    s2 = float(rel @ rel) / dof if dof > 0 else float("nan")
    identifiable = bool(np.linalg.matrix_rank(jac) == 3) and hinge_is_interior(b, b0)
    cov: Array = s2 * np.linalg.pinv(jac.T @ jac).astype(np.float64)
    return CurveResult(form, values, cov, b, zeros, y, identifiable, aicc(rel, 3))


def hinge_is_interior(b: Array, b0: float) -> bool:
    """A hinge is only supported when at least two batch sizes lie on each side of it."""
    knots = np.unique(b)
    return int((knots <= b0).sum()) >= 2 and int((knots > b0).sum()) >= 2


def select(results: list[CurveResult]) -> CurveResult:
    """Lowest AICc wins; the record says by how much, so a close call is visible."""
    ranked = sorted(results, key=lambda r: r.aicc)
    best = ranked[0]
    if len(ranked) == 1:
        text = f"{best.form.name} (the only form the data can support)"
    else:
        others = ", ".join(f"{r.form.name} {_fmt_aicc(r.aicc)}" for r in ranked[1:])
        text = f"{best.form.name} by AICc ({_fmt_aicc(best.aicc)}; {others})"
    return replace(best, selection=text)


def forced(result: CurveResult) -> CurveResult:
    return replace(result, selection=f"{result.form.name} (requested)")


def linearised_design(result: CurveResult) -> Array:
    """The weighted design (the Jacobian of relative residuals) at the fitted coefficients."""
    if result.form.design is not None:
        return result.form.design(result.b, result.chunk) / result.y[:, None]
    _, a, b0 = result.values
    return _hinge_jacobian(result.b, result.y, float(a), float(b0))


def _hinge_jacobian(b: Array, y: Array, a: float, b0: float) -> Array:
    cols = [np.ones_like(b), np.maximum(0.0, b - b0), -a * (b > b0)]
    return np.asarray(np.column_stack(cols) / y[:, None], dtype=np.float64)


def outlier(result: CurveResult, alpha: float = 0.05) -> int | None:
    """Index of a point the Bonferroni outlier test rejects, or None.

    Uses the externally studentised residual (the point's miss measured against the scatter of
    the *other* points), so one wild timing cannot hide itself by inflating the scale.
    """
    from scipy import stats

    n, p = result.n, len(result.values)
    dof = n - p - 1
    if dof < MIN_OUTLIER_DOF:
        return None
    x = linearised_design(result)
    lev = np.einsum("ij,jk,ik->i", x, np.linalg.pinv(x.T @ x), x)
    lev = np.clip(lev, 0.0, 1.0 - 1e-12)
    r = result.rel_residuals
    rss = float(r @ r)
    s2_del = (rss - r**2 / (1.0 - lev)) / dof
    if np.any(s2_del <= 0):
        s2_del = np.maximum(s2_del, (RESIDUAL_FLOOR**2))
    t = np.abs(r) / np.sqrt(s2_del * (1.0 - lev))
    worst = int(np.argmax(t))
    p_value = 2.0 * float(stats.t.sf(t[worst], dof)) * n
    return worst if p_value < alpha and abs(r[worst]) > 10 * RESIDUAL_FLOOR else None


def _fmt_aicc(value: float) -> str:
    return f"AICc {value:.1f}" if np.isfinite(value) else "too few points for AICc"
