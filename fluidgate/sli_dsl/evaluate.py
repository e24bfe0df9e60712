"""Evaluate constant expressions in assignments, with units, to a normalised `Affine` value.

Assignments may do arithmetic (`rate = 3600 /h`, `mixed = 17.4 ms + 0.062 ms/token * chunk`);
the only free name is `chunk`, inside `iteration { mixed = ... }`, and the result must stay
affine in it. Errors go to the bag and evaluation returns None, so the checker keeps going.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fluidgate.diagnostics import DiagnosticBag, did_you_mean
from fluidgate.sli_dsl import syntax as sx
from fluidgate.sli_dsl.units import (
    MONEY_RATE,
    NUMBER,
    PER_MONEY,
    PER_WORDS,
    RATE,
    UNITS,
    Dim,
    Value,
)


@dataclass(frozen=True, slots=True)
class Affine:
    """`const + slope·var` with the dimension of the whole (slope has dim/var's dim)."""

    const: float
    slope: float
    dim: Dim
    per_gpu: bool = False

    @property
    def is_constant(self) -> bool:
        return self.slope == 0.0


def quantity_value(q: sx.Quantity, bag: DiagnosticBag) -> Value | None:
    """Normalise one literal (`0.5 /s per gpu`, `0.1 per Mtok`, `17.4 ms`) to base units."""
    if not math.isfinite(q.value):
        bag.error("number is too large to represent", q.span)
        return None
    scale, dim = UNITS[q.unit] if q.unit is not None else (1.0, NUMBER)
    value = q.value * scale
    per_gpu = False
    for word in q.pers:
        if word == "gpu":
            if per_gpu:
                bag.error("'per gpu' is given twice", q.span)
                return None
            if dim not in (RATE, MONEY_RATE):
                bag.error(
                    f"'per gpu' only follows a rate (like '0.5 /s per gpu' or '280 per s per "
                    f"gpu'), not {dim.describe()}",
                    q.span,
                )
                return None
            per_gpu = True
        elif word in PER_MONEY:
            if dim != NUMBER or q.unit is not None:
                bag.error(
                    f"'per {word}' makes a price and follows a bare number, not '{q.unit}'",
                    q.span,
                )
                return None
            money_scale, dim = PER_MONEY[word]
            value *= money_scale
        else:
            bag.error(
                f"unknown unit 'per {word}'{did_you_mean(word, PER_WORDS)}; "
                f"expected one of {', '.join('per ' + w for w in PER_WORDS)}",
                q.span,
            )
            return None
    return Value(value, dim, per_gpu)


def evaluate(
    expr: sx.SyntaxExpr,
    bag: DiagnosticBag,
    variables: dict[str, Dim] | None = None,
) -> Affine | None:
    """Fold a constant (or affine-in-one-variable) expression; None after reporting errors."""
    result = _evaluate(expr, bag, variables)
    if result is not None and not (math.isfinite(result.const) and math.isfinite(result.slope)):
        bag.error("the value is too large to represent", expr.span)
        return None
    return result


def _evaluate(
    expr: sx.SyntaxExpr,
    bag: DiagnosticBag,
    variables: dict[str, Dim] | None = None,
) -> Affine | None:
    variables = variables or {}
    if isinstance(expr, sx.Quantity):
        v = quantity_value(expr, bag)
        return None if v is None else Affine(v.value, 0.0, v.dim, v.per_gpu)
    if isinstance(expr, sx.Metric):
        if expr.arg is None and expr.name in variables:
            return Affine(0.0, 1.0, variables[expr.name])
        allowed = f"; only {', '.join(variables)} may appear here" if variables else ""
        bag.error(
            f"'{expr.name}' is not a value here{did_you_mean(expr.name, variables)}{allowed}",
            expr.span,
            hint="write a number with a unit, like '22 ms' or '0.5 /s per gpu'"
            if not variables
            else None,
        )
        return None
    if isinstance(expr, sx.Negate):
        inner = _evaluate(expr.operand, bag, variables)
        if inner is None:
            return None
        return Affine(-inner.const, -inner.slope, inner.dim, inner.per_gpu)
    left = _evaluate(expr.left, bag, variables)
    right = _evaluate(expr.right, bag, variables)
    if left is None or right is None:
        return None
    per_gpu = left.per_gpu or right.per_gpu
    if expr.op in "+-":
        if left.dim != right.dim:
            bag.error(
                f"cannot {'add' if expr.op == '+' else 'subtract'} {right.dim.describe()} "
                f"{'to' if expr.op == '+' else 'from'} {left.dim.describe()}",
                expr.span,
            )
            return None
        if left.per_gpu != right.per_gpu:
            bag.error("cannot mix a per-GPU rate with a cluster-wide one in one sum; write "
                      "both with 'per gpu' or neither", expr.span)
            return None
        sign = 1.0 if expr.op == "+" else -1.0
        return Affine(left.const + sign * right.const, left.slope + sign * right.slope, left.dim,
                      per_gpu)
    if expr.op == "*":
        if not left.is_constant and not right.is_constant:
            bag.error("the expression must be affine (a product of two variables is not)",
                      expr.span)
            return None
        if left.is_constant:
            k, other = left.const, right
        else:
            k, other = right.const, left
        return Affine(k * other.const, k * other.slope, left.dim * right.dim, per_gpu)
    if not right.is_constant:
        bag.error("cannot divide by an expression that varies", expr.right.span)
        return None
    if right.const == 0.0:
        bag.error("division by zero", expr.span)
        return None
    return Affine(left.const / right.const, left.slope / right.const, left.dim / right.dim,
                  per_gpu)
