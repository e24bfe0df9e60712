"""The iteration-time part of the cluster block: inline `iteration { ... }` or a
calibration file named by `iteration from`, and whether that file fits the policy."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from fluidgate.diagnostics import DiagnosticBag, Span
from fluidgate.model import Cluster, IterationCurve, IterationTime
from fluidgate.sli_dsl import syntax as sx
from fluidgate.sli_dsl.evaluate import evaluate
from fluidgate.sli_dsl.fields import fields, plausible, positive, value
from fluidgate.sli_dsl.units import TIME, TOKENS

if TYPE_CHECKING:
    from fluidgate.calibration.schema import CalibrationFile

ITERATION_FIELDS = ("mixed", "solo")


def check_iteration(
    item: sx.IterationBlock | sx.IterationFrom, base_dir: Path | None, bag: DiagnosticBag
) -> tuple[IterationTime | None, CalibrationFile | None]:
    if isinstance(item, sx.IterationFrom):
        return _load_iteration_file(item, base_dir, bag)
    f = fields(item.assigns, ITERATION_FIELDS, "the iteration block", bag)
    for name in ITERATION_FIELDS:
        if name not in f:
            bag.error(f"the iteration block needs '{name}'", item.span)
    mixed = solo = None
    if "mixed" in f:
        a = f["mixed"]
        mixed = evaluate(a.value, bag, {"chunk": TOKENS})
        if mixed is not None and mixed.dim != TIME:
            bag.error(f"'mixed' must be a time, not {mixed.dim.describe()}", a.value.span,
                      hint="for example 'mixed = 17.4 ms + 0.062 ms/token * chunk'")
            mixed = None
        if mixed is not None and (mixed.const <= 0 or mixed.slope < 0):
            bag.error("'mixed' needs a positive intercept and a non-negative slope in chunk",
                      a.value.span)
            mixed = None
        if mixed is not None and not (1e-6 <= mixed.const <= 3600 and mixed.slope <= 1.0):
            bag.error("'mixed' is outside the range fluidgate can solve reliably (intercept "
                      "1 us to 1 h, slope at most 1 s/token)", a.value.span)
            mixed = None
    if "solo" in f:
        solo = value(f["solo"], [TIME], bag, "22 ms")
        if solo is not None and not (positive(f["solo"], solo.const, bag)
                                     and plausible(f["solo"], solo.const, bag)):
            solo = None
    if mixed is None or solo is None:
        return None, None
    return IterationTime(alpha=mixed.const, beta=mixed.slope, tau_solo=solo.const), None


def _load_iteration_file(
    item: sx.IterationFrom, base_dir: Path | None, bag: DiagnosticBag
) -> tuple[IterationTime | None, CalibrationFile | None]:
    from fluidgate.calibration.schema import CalibrationError, load_calibration

    path = Path(item.path)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        calib = load_calibration(path)
    except CalibrationError as exc:
        bag.error(str(exc), item.path_span)
        return None, None
    if not (1e-6 <= calib.alpha <= 3600 and calib.beta <= 1.0 and 1e-6 <= 1 / calib.gamma <= 3600):
        bag.error(f"calibration file '{path}' holds constants outside the range fluidgate can "
                  f"solve reliably (alpha = {calib.alpha:g} s, beta = {calib.beta:g} s/token, "
                  f"gamma = {calib.gamma:g} /s; expected alpha and 1/gamma between 1 us and "
                  "1 h, beta at most 1 s/token)", item.path_span)
        return None, None
    mixed = _curve(calib, "mixed", path, item.path_span, bag)
    solo = _curve(calib, "solo", path, item.path_span, bag)
    return IterationTime(calib.alpha, calib.beta, 1.0 / calib.gamma, source=str(path),
                         calibrated_mixed=mixed, calibrated_solo=solo), calib


def _curve(calib: CalibrationFile, name: str, path: Path, span: Span,
           bag: DiagnosticBag) -> IterationCurve | None:
    """The file's fitted curve, kept for an iteration-level simulator; the LP needs only the
    constants, so a curve fluidgate cannot read is a warning (the simulator then uses the
    curve the constants imply), not an error."""
    fit = calib.curves.get(name)
    if fit is None:
        return None
    try:
        return IterationCurve.from_fit(fit.form, fit.coefficients)
    except ValueError as exc:
        bag.warning(f"calibration file '{path}': curve '{name}' is not usable ({exc}); an "
                    f"iteration-level model will use the curve that alpha, beta and gamma "
                    "imply", span)
        return None


def check_calibration_fit(
    cluster: Cluster, calib: CalibrationFile, span: Span, bag: DiagnosticBag
) -> None:
    """γ and the secant α + β·C are derived for one B and one chunk range: say so when the
    policy runs outside them, since the constants then describe another operating point."""
    if calib.max_batch is not None and calib.max_batch != cluster.max_batch:
        bag.warning(f"the calibration was derived for max_batch = {calib.max_batch}, but the "
                    f"cluster uses {cluster.max_batch}: γ = 1/τ_solo(B) and the secant of "
                    "τ_mix(·, B−1) belong to the other batch size", span,
                    hint=f"re-run 'fluidgate calibrate fit ... --max-batch {cluster.max_batch}'")
    rng = calib.chunk_range
    if rng is not None and not (rng[0] <= cluster.chunk <= rng[1]):
        bag.warning(f"chunk = {cluster.chunk:g} tokens lies outside the calibration's chunk "
                    f"range {rng[0]:g}–{rng[1]:g}: the secant α + β·C is an extrapolation "
                    "there", span)
