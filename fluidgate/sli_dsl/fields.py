"""Reading `name = value` fields: unknown and repeated names, dimensions, ranges.

Shared by every block's checker so that each field error reads the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fluidgate.diagnostics import DiagnosticBag, Span, did_you_mean
from fluidgate.sli_dsl import syntax as sx
from fluidgate.sli_dsl.evaluate import Affine, evaluate
from fluidgate.sli_dsl.units import NUMBER, Dim


def fields(
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


def value(
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


def positive(a: sx.Assign, v: float, bag: DiagnosticBag, strict: bool = True) -> bool:
    return positive_at(f"'{a.name}'", v, a.value.span, bag, strict)


def positive_at(what: str, v: float, span: Span, bag: DiagnosticBag,
                strict: bool = True) -> bool:
    """`positive` for a value that is not an assignment (a cell of a class table)."""
    ok = v > 0 if strict else v >= 0
    if not ok:
        bag.error(f"{what} must be {'positive' if strict else 'non-negative'}, got {v:g}", span)
    return ok


@dataclass(frozen=True, slots=True)
class Price:
    """A price as written: per token, or per request (resolved per class by `per_token`)."""

    value: float
    per_request: bool


def per_token(price: Price | None, tokens: float) -> float:
    if price is None:
        return 0.0
    return price.value / tokens if price.per_request else price.value


# Values outside these ranges are typos or unit slips, and they wreck the LP's numerics
# (HiGHS rejects coefficients beyond 1e15): catch them here, with a position. Each range is
# one where fluidgate's solves were checked (tests/test_extreme.py spreads policies over
# all of them at once and verifies every answer); docs/language.md lists them.
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
    # prices and penalties may also be exactly 0
    "price per token": (1e-12, 1e6, "per token"),  # 1e-6 to 1e12 per Mtok
    "price per request": (1e-12, 1e12, "per request"),
    "penalty": (1e-9, 1e9, ""),
    # any number written in an slo constraint (bounds and factors), in base units:
    # seconds, requests/s and money/s cluster-wide, tokens, shares
    "slo constant": (1e-12, 1e15, ""),
}
# what the range reads as in the message when the unit alone does not say it all
RANGE_NOTES = {"price per token": "that is 1e-06 to 1e+12 per Mtok",
               "slo constant": "for any number in an slo constraint, in seconds, "
                               "requests/s, money/s or plain numbers"}


def in_range(name: str | None, value: float, span: Span, bag: DiagnosticBag, key: str,
             zero_ok: bool = False, shown: str | None = None) -> bool:
    """Report `value` at `span` unless it lies in the `key` range of `PLAUSIBLE` (by
    magnitude for an slo constant, which may be negative)."""
    lo, hi, unit = PLAUSIBLE[key]
    signed = key == "slo constant"
    if (zero_ok and value == 0.0) or lo <= (abs(value) if signed else value) <= hi:
        return True
    unit = f" {unit}" if unit else ""
    accepted = f"{'magnitude ' if signed else ''}{lo:g} to {hi:g}{unit}"
    if zero_ok:
        accepted = f"0, or {accepted}"
    note = RANGE_NOTES.get(key)
    if note:
        accepted += f"; {note}"
    shown = f"{shown} ({value:g}{unit})" if shown else f"{value:g}{unit}"
    what = f"{name} = {shown}" if name else shown
    bag.error(f"{what} is outside the range fluidgate can solve reliably ({accepted})", span)
    return False


def plausible(a: sx.Assign, value: float, bag: DiagnosticBag, key: str | None = None) -> bool:
    return in_range(f"'{a.name}'", value, a.value.span, bag, key or a.name)


def integer(a: sx.Assign, minimum: int, bag: DiagnosticBag) -> int | None:
    got = value(a, [NUMBER], bag, str(minimum))
    if got is None:
        return None
    if got.const != int(got.const) or got.const < minimum:
        bag.error(f"'{a.name}' must be an integer of at least {minimum}, got {got.const:g}",
                  a.value.span)
        return None
    if not plausible(a, got.const, bag):
        return None
    return int(got.const)
