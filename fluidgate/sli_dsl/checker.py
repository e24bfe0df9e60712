"""Semantic checks: `Document` → typed `Policy`, reporting every problem found in one pass.

Each block is checked independently and problems are collected in a `DiagnosticBag`, so a
user with three typos sees three errors at once. Only if the bag holds no error is a
`Policy` built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fluidgate.diagnostics import DiagnosticBag, Span, did_you_mean
from fluidgate.model import (
    Cluster,
    IterationTime,
    Objective,
    Policy,
    PricingMode,
    WorkloadClass,
)
from fluidgate.sli_dsl import syntax as sx
from fluidgate.sli_dsl.evaluate import Affine, evaluate
from fluidgate.sli_dsl.slo_check import check_slo_block
from fluidgate.sli_dsl.units import (
    MONEY_PER_REQUEST,
    MONEY_PER_TOKEN,
    NUMBER,
    RATE,
    TIME,
    TOKENS,
    Dim,
)

if TYPE_CHECKING:
    from fluidgate.calibration.schema import CalibrationFile

CLUSTER_FIELDS = ("gpus", "max_batch", "chunk")
ITERATION_FIELDS = ("mixed", "solo")
PRICE_FIELDS = ("input", "output")
CLASS_FIELDS = ("rate", "prompt", "output", "patience", "weight")
PRICING_MODES = ("bundled", "separate")


@dataclass(frozen=True, slots=True)
class _Price:
    """A price as written: per token, or per request (resolved per class later)."""

    value: float
    per_request: bool


def _fields(
    assigns: Sequence[sx.Assign], allowed: Sequence[str], where: str, bag: DiagnosticBag
) -> dict[str, sx.Assign]:
    """Index assignments by name, reporting unknown and repeated fields."""
    seen: dict[str, sx.Assign] = {}
    for a in assigns:
        if a.name not in allowed:
            bag.error(
                f"unknown field '{a.name}' in {where}{did_you_mean(a.name, allowed)}; "
                f"expected one of {', '.join(allowed)}",
                a.name_span,
            )
        elif a.name in seen:
            first = seen[a.name].span
            bag.error(f"'{a.name}' is set twice in {where} (first on line {first.line})",
                      a.name_span)
        else:
            seen[a.name] = a
    return seen


def _value(
    a: sx.Assign, dims: Sequence[Dim], bag: DiagnosticBag, example: str
) -> Affine | None:
    got = evaluate(a.value, bag)
    if got is None:
        return None
    if got.dim not in dims:
        wanted = " or ".join(d.describe() for d in dims)
        bag.error(f"'{a.name}' must be {wanted}, not {got.dim.describe()}", a.value.span,
                  hint=f"for example '{a.name} = {example}'")
        return None
    return got


def _positive(a: sx.Assign, v: float, bag: DiagnosticBag, strict: bool = True) -> bool:
    ok = v > 0 if strict else v >= 0
    if not ok:
        bag.error(f"'{a.name}' must be {'positive' if strict else 'non-negative'}, got {v:g}",
                  a.value.span)
    return ok


# Values outside these ranges are typos or unit slips, and they wreck the LP's numerics
# (HiGHS rejects coefficients beyond 1e15): catch them here, with a position.
PLAUSIBLE: dict[str, tuple[float, float, str]] = {
    "gpus": (1, 1e7, "GPUs"),
    "max_batch": (2, 1e6, "streams"),
    "chunk": (1, 1e7, "tokens"),
    "prompt": (1, 1e8, "tokens"),
    "output": (1, 1e8, "tokens"),
    "patience": (1e-3, 1e9, "s"),
    "rate": (1e-9, 1e7, "requests/s per GPU"),
    "solo": (1e-6, 3600, "s"),
    "weight": (1e-6, 1e6, ""),
}


def _plausible(a: sx.Assign, value: float, bag: DiagnosticBag, key: str | None = None) -> bool:
    lo, hi, unit = PLAUSIBLE[key or a.name]
    if lo <= value <= hi:
        return True
    unit = f" {unit}" if unit else ""
    bag.error(f"'{a.name}' = {value:g}{unit} is outside the range fluidgate can solve "
              f"reliably ({lo:g} to {hi:g}{unit})", a.value.span)
    return False


def _integer(a: sx.Assign, minimum: int, bag: DiagnosticBag) -> int | None:
    got = _value(a, [NUMBER], bag, str(minimum))
    if got is None:
        return None
    if got.const != int(got.const) or got.const < minimum:
        bag.error(f"'{a.name}' must be an integer of at least {minimum}, got {got.const:g}",
                  a.value.span)
        return None
    if not _plausible(a, got.const, bag):
        return None
    return int(got.const)


def _check_iteration(
    item: sx.IterationBlock | sx.IterationFrom, base_dir: Path | None, bag: DiagnosticBag
) -> tuple[IterationTime | None, CalibrationFile | None]:
    if isinstance(item, sx.IterationFrom):
        return _load_iteration_file(item, base_dir, bag)
    f = _fields(item.assigns, ITERATION_FIELDS, "the iteration block", bag)
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
        solo = _value(f["solo"], [TIME], bag, "22 ms")
        if solo is not None and not (_positive(f["solo"], solo.const, bag)
                                     and _plausible(f["solo"], solo.const, bag)):
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
    return IterationTime(calib.alpha, calib.beta, 1.0 / calib.gamma, source=str(path)), calib


def _check_calibration_fit(
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


def _check_cluster(
    block: sx.ClusterBlock, base_dir: Path | None, bag: DiagnosticBag
) -> Cluster | None:
    f = _fields(block.assigns, CLUSTER_FIELDS, "the cluster block", bag)
    for name in CLUSTER_FIELDS:
        if name not in f:
            bag.error(f"the cluster block needs '{name}'", block.span)
    gpus = _integer(f["gpus"], 1, bag) if "gpus" in f else None
    batch = _integer(f["max_batch"], 2, bag) if "max_batch" in f else None
    chunk = None
    if "chunk" in f:
        got = _value(f["chunk"], [TOKENS], bag, "256 tokens")
        if got is not None and _positive(f["chunk"], got.const, bag) and _plausible(
                f["chunk"], got.const, bag):
            chunk = got.const
    iteration = calib = None
    if not block.iterations:
        bag.error("the cluster block needs 'iteration { mixed = ...; solo = ... }' or "
                  "'iteration from \"calib.json\"'", block.span)
    for extra in block.iterations[1:]:
        bag.error("the iteration time is given twice", extra.span)
    if block.iterations:
        iteration, calib = _check_iteration(block.iterations[0], base_dir, bag)
    if gpus is None or batch is None or chunk is None or iteration is None:
        return None
    cluster = Cluster(gpus=gpus, max_batch=batch, chunk=chunk, iteration=iteration)
    if calib is not None:
        _check_calibration_fit(cluster, calib, block.iterations[0].span, bag)
    return cluster


def _check_prices(
    assigns: Sequence[sx.Assign], where: str, bag: DiagnosticBag
) -> dict[str, _Price]:
    f = _fields(assigns, PRICE_FIELDS, where, bag)
    out: dict[str, _Price] = {}
    for name, a in f.items():
        got = _value(a, [MONEY_PER_TOKEN, MONEY_PER_REQUEST], bag, "0.1 per token")
        if got is not None and _positive(a, got.const, bag, strict=False):
            out[name] = _Price(got.const, got.dim == MONEY_PER_REQUEST)
    return out


def _per_token(price: _Price | None, tokens: float) -> float:
    if price is None:
        return 0.0
    return price.value / tokens if price.per_request else price.value


def _check_class(
    block: sx.ClassBlock,
    cluster: Cluster | None,
    default_prices: dict[str, _Price],
    bag: DiagnosticBag,
) -> WorkloadClass | None:
    where = f"class '{block.name}'"
    if block.name == "all":
        bag.error("a class may not be called 'all' (it means every class in an slo)",
                  block.name_span)
    f = _fields(block.assigns, CLASS_FIELDS, where, bag)
    for name in ("rate", "prompt", "output"):
        if name not in f:
            bag.error(f"{where} needs '{name}'", block.name_span)
    rate = prompt = output = None
    patience: float | None = None
    ok = True
    if "rate" in f:
        got = _value(f["rate"], [RATE], bag, "0.5 /s per gpu")
        if got is not None and _positive(f["rate"], got.const, bag):
            if got.per_gpu:
                rate = got.const
            elif cluster is not None:
                rate = got.const / cluster.gpus
            if rate is not None and not _plausible(f["rate"], rate, bag):
                rate = None
    for name in ("prompt", "output"):
        if name in f:
            got = _value(f[name], [TOKENS], bag, "300 tokens")
            if got is not None and _positive(f[name], got.const, bag) and _plausible(
                    f[name], got.const, bag):
                if name == "prompt":
                    prompt = got.const
                else:
                    output = got.const
    if "patience" in f:
        a = f["patience"]
        if isinstance(a.value, sx.Metric) and a.value.name == "none" and a.value.arg is None:
            patience = None
        else:
            got = _value(a, [TIME], bag, "10 s")
            ok = got is not None and _positive(a, got.const, bag) and _plausible(a, got.const,
                                                                                   bag)
            patience = got.const if got is not None else None
    weight = 1.0
    if "weight" in f:
        got = _value(f["weight"], [NUMBER], bag, "1")
        weight_ok = got is not None and _positive(f["weight"], got.const, bag) and _plausible(
            f["weight"], got.const, bag)
        ok = ok and weight_ok
        weight = got.const if got is not None else 1.0
    prices = dict(default_prices)
    for extra in block.prices[1:]:
        bag.error(f"{where} has two price blocks", extra.span)
    if block.prices:
        prices.update(_check_prices(block.prices[0].assigns, f"the price of {where}", bag))
    if not ok or rate is None or prompt is None or output is None:
        return None
    return WorkloadClass(
        name=block.name,
        rate=rate,
        prompt=prompt,
        output=output,
        patience=patience,
        price_input=_per_token(prices.get("input"), prompt),
        price_output=_per_token(prices.get("output"), output),
        weight=weight,
        span=block.name_span,
    )


def _single(
    items: Sequence[sx.TopLevel], kind: type, label: str, bag: DiagnosticBag
) -> list[sx.TopLevel]:
    found = [i for i in items if isinstance(i, kind)]
    for extra in found[1:]:
        bag.error(f"the {label} is given twice (first on line {found[0].span.line})",
                  extra.span)
    return found


def check_document(
    doc: sx.Document, base_dir: Path | None, bag: DiagnosticBag
) -> Policy | None:
    """Check a parsed document; returns a Policy only when no error was reported."""
    top = Span(doc.file, 1, 1, 1, 2)
    names = _single(doc.items, sx.PolicyDecl, "policy name", bag)
    clusters = _single(doc.items, sx.ClusterBlock, "cluster block", bag)
    pricings = _single(doc.items, sx.PricingBlock, "pricing block", bag)
    objectives = _single(doc.items, sx.ObjectiveDecl, "objective", bag)
    if not clusters:
        bag.error("the policy needs a 'cluster { ... }' block", top)
    if not pricings:
        bag.error("the policy needs a 'pricing bundled { ... }' or 'pricing separate { ... }' "
                  "block", top)
    cluster = None
    if clusters:
        assert isinstance(clusters[0], sx.ClusterBlock)
        cluster = _check_cluster(clusters[0], base_dir, bag)
    mode: PricingMode = "bundled"
    default_prices: dict[str, _Price] = {}
    if pricings:
        p = pricings[0]
        assert isinstance(p, sx.PricingBlock)
        if p.mode not in PRICING_MODES:
            bag.error(f"unknown pricing '{p.mode}'{did_you_mean(p.mode, PRICING_MODES)}; "
                      "expected 'bundled' or 'separate'", p.mode_span)
        else:
            mode = "bundled" if p.mode == "bundled" else "separate"
        default_prices = _check_prices(p.assigns, "the pricing block", bag)
    objective = Objective.REVENUE
    if objectives:
        o = objectives[0]
        assert isinstance(o, sx.ObjectiveDecl)
        choices = [x.value for x in Objective]
        if o.name not in choices:
            bag.error(f"unknown objective '{o.name}'{did_you_mean(o.name, choices)}; expected "
                      f"one of {', '.join(choices)}", o.name_span)
        else:
            objective = Objective(o.name)
    class_blocks = [i for i in doc.items if isinstance(i, sx.ClassBlock)]
    if not class_blocks:
        bag.error("the policy needs at least one 'class NAME { ... }' block", top)
    seen: dict[str, sx.ClassBlock] = {}
    classes: list[WorkloadClass] = []
    for block in class_blocks:
        if block.name in seen:
            bag.error(f"class '{block.name}' is defined twice (first on line "
                      f"{seen[block.name].span.line})", block.name_span)
            continue
        seen[block.name] = block
        checked = _check_class(block, cluster, default_prices, bag)
        if checked is not None:
            classes.append(checked)
    slos = []
    for slo_block in (i for i in doc.items if isinstance(i, sx.SloBlock)):
        slos.extend(check_slo_block(slo_block, tuple(seen), cluster, doc.text, bag))
    if bag.errors or cluster is None:
        return None
    name = str(getattr(names[0], "name", "")) if names else Path(doc.file).stem
    return Policy(
        name=name,
        cluster=cluster,
        pricing=mode,
        classes=tuple(classes),
        objective=objective,
        slos=tuple(slos),
        source_file=doc.file,
        source_text=doc.text,
    )
