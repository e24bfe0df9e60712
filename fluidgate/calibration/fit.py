"""From measurements to the LP's three constants α, β, γ, with the evidence for them.

The LP (DESIGN.md §1) needs straight lines: `γ = 1/τ_solo(B)` and `τ_mix(C) = α + β·C` for
a mixed GPU carrying B − 1 decodes. Real hardware is not straight (decode steps slow as the
batch grows, prefill bends upward at large chunks), so the fit first models the measured
curves as faithfully as the data allow, then takes the LP's line as the secant of
`τ_mix(·, B−1)` over the chunk range the operator will use, and reports how far the line
strays from the curve there. Every judgement call (which form, what was extrapolated) ends up
in the calibration's warnings rather than being hidden.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from fluidgate.calibration.csvformat import MeasurementSet
from fluidgate.calibration.curves import (
    FORMS,
    Array,
    CurveResult,
    fit_hinge,
    fit_linear,
    forced,
    hinge_is_interior,
    outlier,
    select,
    t_quantile,
)

SoloForm = Literal["auto", "affine", "hinge"]
MixForm = Literal["auto", "affine", "quadratic"]

R2_WARN = 0.95
GAP_WARN = 0.05
FEW_DOF = 3


class FitError(Exception):
    """The data cannot yield a calibration; the message says what to measure or pass."""


@dataclass(frozen=True)
class FitOptions:
    max_batch: int | None = None
    chunk_range: tuple[float, float] | None = None
    solo_form: SoloForm = "auto"
    mix_form: MixForm = "auto"
    drop_outliers: bool = True


@dataclass(frozen=True)
class Calibration:
    """The fitted curves, the derived constants, and what a reader should be warned about."""

    solo: CurveResult
    mix: CurveResult
    max_batch: int
    chunk_range: tuple[float, float]
    alpha: float
    beta: float
    gamma: float
    tau_solo_at_b: float
    secant_max_rel_gap: float
    mix_decodes: float | None  # the fixed b of the mixed data when its b-slope is borrowed
    derived_ci95: dict[str, tuple[float, float]] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    measured_chunks: tuple[float, float] | None = None  # smallest and largest chunk measured

    @property
    def chunk_range_note(self) -> str:
        """One short line: the secant's chunk range and where it came from."""
        lo, hi = self.chunk_range
        head = f"chunks {lo:g}..{hi:g}"
        if self.measured_chunks is None:
            return f"{head}: from --chunk-range"
        if self.chunk_range == self.measured_chunks:
            return f"{head}: the measured range (the default)"
        mlo, mhi = self.measured_chunks
        return f"{head}: from --chunk-range (measured: {mlo:g}..{mhi:g})"

    def tau_mix_at(self, chunk: Array | float) -> Array:
        """τ_mix(C, B−1): the fitted curve, with the decode-slope extension when b was fixed."""
        return _tau_mix(self.solo.values, self.mix.values, self, np.asarray(chunk, float))


def calibrate(data: MeasurementSet, options: FitOptions | None = None) -> Calibration:
    """Fit both curves and derive α, β, γ; data that cannot support them raise `FitError`."""
    options = options or FitOptions()
    warnings: list[str] = list(data.notes)
    devices = {v for k, v in data.metadata.items() if k == "device" or k.endswith(":device")}
    if len(devices) > 1:
        warnings.append(
            f"the inputs were measured on different devices: {'; '.join(sorted(devices))}"
        )
    solo_rows = [r for r in data.rows if r.kind == "solo"]
    mixed_rows = [r for r in data.rows if r.kind == "mixed"]
    prefill_rows = [r for r in data.rows if r.kind == "prefill"]
    if not solo_rows:
        raise FitError("no decode-only (solo) batches: γ = 1/τ_solo(B) needs them")
    if not mixed_rows and not prefill_rows:
        raise FitError("no batches with a prefill chunk: α and β need mixed or prefill batches")
    if not mixed_rows:
        warnings.append(
            "no mixed batches: prefill-only batches are used as mixed batches with b = 0, so"
            " τ_mix(C, B−1) adds τ_solo(B−1) − τ_solo(0) (the decode curve's cost of B−1"
            " streams) to the prefill curve; measure mixed batches to replace this assumption"
        )
    chunk_rows = mixed_rows + prefill_rows
    if any(not r.time_s > 0 for r in data.rows):
        raise FitError("every iteration time must be a positive number of seconds")

    b = np.array([r.batch_size for r in solo_rows], float)
    y = np.array([r.time_s for r in solo_rows], float)
    solo = _fit_solo(b, y, options.solo_form, options.drop_outliers)

    mb = np.array([r.batch_size for r in chunk_rows], float)
    mc = np.array([r.chunk for r in chunk_rows], float)
    my = np.array([r.time_s for r in chunk_rows], float)
    mix = _fit_mix(mb, mc, my, options.mix_form, options.drop_outliers)

    max_batch = options.max_batch or int(b.max())
    if max_batch < 2:
        raise FitError(f"--max-batch must be at least 2, got {max_batch}")
    measured = (float(mc.min()), float(mc.max()))
    lo, hi = options.chunk_range or measured
    if not 0 < lo < hi:
        raise FitError(f"the chunk range needs 0 < LO < HI, got {lo:g} {hi:g}")
    where = _range_origin(options.chunk_range, measured)
    fixed_b = None if "m_decode" in mix.form.names else float(mix.b[0])

    draft = Calibration(solo, mix, max_batch, (lo, hi), 0, 0, 0, 0, 0, fixed_b,
                        measured_chunks=measured)
    alpha, beta, gamma, tau_b, gap = _derive(solo.values, mix.values, draft)
    if not beta >= 0:
        raise FitError(
            f"τ_mix(C, {max_batch - 1}) falls as the chunk grows over {lo:g}..{hi:g} tokens"
            f" ({where}; β = {beta:.3g} s/token); check the data or pass a wider --chunk-range"
        )
    if not alpha > 0:
        raise FitError(
            f"the secant over {lo:g}..{hi:g} tokens ({where}) crosses zero"
            f" (α = {alpha:.3g} s): the curve bends too much for one line there; "
            + ("pass --chunk-range LO HI with the narrower range of chunks you serve"
               if options.chunk_range is None else
               "narrow --chunk-range to the chunks you serve, inside the measured ones, or"
               " leave it out to use the measured range")
        )
    if not gamma > 0:
        raise FitError(f"τ_solo({max_batch}) = {tau_b:.3g} s is not positive")
    result = Calibration(
        solo,
        mix,
        max_batch,
        (lo, hi),
        alpha,
        beta,
        gamma,
        tau_b,
        gap,
        fixed_b,
        _derived_ci(draft),
        (),
        measured,
    )
    warnings += _quality_warnings(result, b, mb, mc)
    return replace(result, warnings=tuple(dict.fromkeys(warnings)))


def _range_origin(given: tuple[float, float] | None, measured: tuple[float, float]) -> str:
    """Say which chunk range a secant used: the default (what was measured) or the option,
    with the measured chunks alongside, since a range fitted outside them is a guess."""
    if given is None:
        return "the measured chunk range, the default"
    return f"from --chunk-range; the data measured chunks {measured[0]:g}..{measured[1]:g}"


def _screen(
    flexible: Callable[[Array, Array, Array], CurveResult], b: Array, chunk: Array, y: Array
) -> tuple[Array, Array, Array, tuple[tuple[float, float, float], ...]]:
    """Drop points the most flexible candidate form calls outliers, one at a time.

    Screening with the most flexible form keeps real curvature (a C² bend, a hinge) from
    being mistaken for outliers; at most one point in ten is dropped, and every drop is
    reported, because a silently cleaned calibration cannot be audited.
    """
    dropped: list[tuple[float, float, float]] = []
    budget = max(1, y.size // 10)
    while len(dropped) < budget:
        result = flexible(b, chunk, y)
        index = outlier(result)
        if index is None or y.size - 1 < len(result.values) + 3:
            break
        dropped.append((float(b[index]), float(chunk[index]), float(y[index])))
        keep = np.arange(y.size) != index
        b, chunk, y = b[keep], chunk[keep], y[keep]
    return b, chunk, y, tuple(dropped)


def _fit_solo(b: Array, y: Array, form: SoloForm, drop_outliers: bool) -> CurveResult:
    if b.size < 3 or np.unique(b).size < 2:
        raise FitError(
            f"too few decode-only points ({b.size} at {np.unique(b).size} batch size(s)):"
            " need at least 3 points at 2 or more batch sizes"
        )

    def hinge_ok(bb: Array) -> bool:
        return bb.size >= 5 and np.unique(bb).size >= 3

    def flexible(bb: Array, cc: Array, yy: Array) -> CurveResult:
        if form != "affine" and hinge_ok(bb):
            hinge = fit_hinge(bb, yy)
            if hinge.identifiable:
                return hinge
        return fit_linear(FORMS["solo:affine"], bb, cc, yy)

    dropped: tuple[tuple[float, float, float], ...] = ()
    if drop_outliers:
        b, _, y, dropped = _screen(flexible, b, np.zeros_like(b), y)
    affine = fit_linear(FORMS["solo:affine"], b, np.zeros_like(b), y)
    if form == "affine":
        return replace(forced(affine), dropped=dropped)
    if form == "hinge":
        if not hinge_ok(b):
            raise FitError("a hinge needs at least 5 decode-only points at 3 or more batch sizes")
        return replace(forced(fit_hinge(b, y)), dropped=dropped)
    chosen = select([affine, fit_hinge(b, y)] if hinge_ok(b) else [affine])
    return replace(chosen, dropped=dropped)


def _fit_mix(b: Array, chunk: Array, y: Array, form: MixForm, drop_outliers: bool) -> CurveResult:
    if np.unique(chunk).size < 2:
        raise FitError("batches with a prefill chunk need at least 2 different chunk sizes")
    suffix = "" if np.unique(b).size >= 2 else "-in-C"

    def flexible(bb: Array, cc: Array, yy: Array) -> CurveResult:
        name = "quadratic" if form != "affine" and np.unique(cc).size >= 3 else "affine"
        return fit_linear(FORMS[f"mix:{name}{suffix}"], bb, cc, yy)

    dropped: tuple[tuple[float, float, float], ...] = ()
    if drop_outliers and y.size > 4:
        b, chunk, y, dropped = _screen(flexible, b, chunk, y)
        suffix = "" if np.unique(b).size >= 2 else "-in-C"
    candidates = []
    for name in ("affine", "quadratic"):
        f = FORMS[f"mix:{name}{suffix}"]
        enough = y.size > len(f.names) and (name == "affine" or np.unique(chunk).size >= 3)
        if form in (name, "auto") and enough:
            candidates.append(fit_linear(f, b, chunk, y))
    if not candidates:
        need = len(FORMS[f"mix:{'quadratic' if form == 'quadratic' else 'affine'}{suffix}"].names)
        raise FitError(
            f"too few batches with a prefill chunk ({y.size}) for the {form} form: need at"
            f" least {need + 1} (3 chunk sizes for the C² term)"
        )
    chosen = forced(candidates[0]) if form != "auto" else select(candidates)
    return replace(chosen, dropped=dropped)


def _tau_mix(solo_v: Array, mix_v: Array, cal: Calibration, chunk: Array) -> Array:
    decodes = float(cal.max_batch - 1)
    if cal.mix_decodes is None:
        return cal.mix.form.evaluate(mix_v, np.full_like(chunk, decodes), chunk)
    base = cal.mix.form.evaluate(mix_v, np.zeros_like(chunk), chunk)
    zero = np.zeros(1)
    extra = cal.solo.form.evaluate(solo_v, np.array([decodes]), zero) - cal.solo.form.evaluate(
        solo_v, np.array([cal.mix_decodes]), zero
    )
    return np.asarray(base + extra[0])


def _derive(solo_v: Array, mix_v: Array, cal: Calibration) -> tuple[float, ...]:
    """α, β (secant over the chunk range), γ, τ_solo(B) and the line's largest relative gap."""
    lo, hi = cal.chunk_range
    grid = np.linspace(lo, hi, 257)
    curve = _tau_mix(solo_v, mix_v, cal, grid)
    beta = float((curve[-1] - curve[0]) / (hi - lo))
    alpha = float(curve[0] - beta * lo)
    tau_b = float(cal.solo.form.evaluate(solo_v, np.array([float(cal.max_batch)]), np.zeros(1))[0])
    gap = float(np.max(np.abs(alpha + beta * grid - curve) / np.abs(curve)))
    return alpha, beta, (1.0 / tau_b if tau_b > 0 else float("nan")), tau_b, gap


def _derived_ci(cal: Calibration) -> dict[str, tuple[float, float]]:
    """Delta method through both curves' covariances (the two fits use disjoint data)."""
    if not (cal.solo.ci95() and cal.mix.ci95()):
        return {}
    ks, km = len(cal.solo.values), len(cal.mix.values)
    theta = np.concatenate([cal.solo.values, cal.mix.values])
    cov = np.zeros((ks + km, ks + km))
    cov[:ks, :ks], cov[ks:, ks:] = cal.solo.cov, cal.mix.cov

    def f(p: Array) -> Array:
        a, b, g, _, _ = _derive(p[:ks], p[ks:], cal)
        return np.array([a, b, g])

    base = f(theta)
    grad = np.zeros((3, theta.size))
    for i in range(theta.size):
        h = 1e-6 * max(abs(theta[i]), np.sqrt(max(cov[i, i], 0.0)), 1e-12)
        step = theta.copy()
        step[i] += h
        grad[:, i] = (f(step) - base) / h
    sd = np.sqrt(np.clip(np.einsum("ij,jk,ik->i", grad, cov, grad), 0.0, None))
    t = t_quantile(min(cal.solo.dof, cal.mix.dof))
    return {
        name: (float(v - t * s), float(v + t * s))
        for name, v, s in zip(("alpha", "beta", "gamma"), base, sd, strict=True)
    }


def _quality_warnings(cal: Calibration, b: Array, mb: Array, mc: Array) -> list[str]:
    out: list[str] = []
    for label, curve in (("τ_solo", cal.solo), ("τ_mix", cal.mix)):
        for pb, pc, py in curve.dropped:
            where = f"b={pb:g}" if label == "τ_solo" else f"C={pc:g}, b={pb:g}"
            miss = py / float(curve.predict(pb, pc)) - 1.0
            out.append(
                f"{label}: left out an outlier ({where}, {py * 1e3:.4g} ms, {miss:+.0%}"
                " off the curve; Bonferroni outlier test at 5%); --keep-outliers keeps it"
            )
        rel = np.abs(curve.rel_residuals)
        if curve.r2 < R2_WARN:
            out.append(f"{label} fits poorly: R² = {curve.r2:.3f} < {R2_WARN}")
        if curve.dof < FEW_DOF:
            out.append(
                f"{label} rests on {curve.n} points for {len(curve.values)} coefficients:"
                " too few to trust its intervals; measure more batch shapes"
            )
        if rel.max() > 0.25:
            i = int(rel.argmax())
            where = (
                f"b={curve.b[i]:g}"
                if label == "τ_solo"
                else f"C={curve.chunk[i]:g}, b={curve.b[i]:g}"
            )
            out.append(f"{label} misses one point by {rel[i]:.0%} ({where}): an outlier?")
    if cal.solo.form.name == "hinge":
        b0 = float(cal.solo.values[2])
        if not hinge_is_interior(b, b0):
            out.append(
                f"the τ_solo hinge b0 = {b0:.3g} sits at the edge of the data (fewer than"
                " two batch sizes on one side); its coefficients are not identified"
            )
    big_b = cal.max_batch
    if not b.min() <= big_b <= b.max():
        out.append(
            f"γ extrapolates τ_solo to B = {big_b}, outside the measured batch sizes"
            f" {b.min():g}..{b.max():g}"
        )
    if cal.mix_decodes is None and not mb.min() <= big_b - 1 <= mb.max():
        out.append(
            f"τ_mix(C, {big_b - 1}) extrapolates beyond the decodes measured in mixed"
            f" batches ({mb.min():g}..{mb.max():g})"
        )
    if cal.mix_decodes is not None and cal.mix_decodes != big_b - 1 and any(mb > 0):
        out.append(
            f"all mixed batches carry b = {cal.mix_decodes:g} decodes, so τ_mix(C,"
            f" {big_b - 1}) borrows the decode curve's cost of the difference"
        )
    lo, hi = cal.chunk_range
    if lo < mc.min() or hi > mc.max():
        out.append(
            f"the chunk range {lo:g}..{hi:g} reaches beyond the measured chunks"
            f" {mc.min():g}..{mc.max():g}"
        )
    if cal.secant_max_rel_gap > GAP_WARN:
        out.append(
            f"α + β·C departs from the fitted τ_mix by up to"
            f" {cal.secant_max_rel_gap:.1%} over {lo:g}..{hi:g} tokens: the LP's line is"
            " a compromise there; narrow --chunk-range to the chunks you serve"
        )
    if not cal.derived_ci95:
        out.append(
            "no confidence intervals for α, β, γ: a curve has no residual degrees of"
            " freedom or an unidentified coefficient"
        )
    return out
