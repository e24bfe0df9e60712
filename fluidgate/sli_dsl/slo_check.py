"""Check the `slo` block: metric names, class arguments, dimensions, `all` expansion.

The result is a list of `SloConstraint` trees in base units (rates and money cluster-wide).
Whether each one is *linear* in the LP variables is decided by the formulation, which owns
the variables; here we only make sure it means something.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from fluidgate.diagnostics import Diagnostic, DiagnosticBag, Span, did_you_mean
from fluidgate.metrics import CATALOGUE, Arity, Metric, MetricInfo, Pool, prefill_time
from fluidgate.model import BinOp, Cluster, Const, Expr, MetricRef, Neg, Op, SloConstraint
from fluidgate.sli_dsl import syntax as sx
from fluidgate.sli_dsl.evaluate import quantity_value
from fluidgate.sli_dsl.fields import in_range
from fluidgate.sli_dsl.units import MONEY_RATE, NUMBER, RATE, TIME, TIME_PER_TOKEN, Dim

METRIC_NAMES = tuple(m.value for m in Metric)
POOLS = tuple(p.value for p in Pool)
TOO_DEEP = ("this expression is too deeply nested to check (a sum or product of about a "
            "thousand terms); split it into several constraints")


def _check_metric(m: sx.Metric, classes: Sequence[str], bag: DiagnosticBag) -> MetricInfo | None:
    if m.name not in METRIC_NAMES:
        bag.error(f"unknown metric '{m.name}'{did_you_mean(m.name, METRIC_NAMES)}", m.name_span,
                  hint=f"metrics are {', '.join(METRIC_NAMES)}")
        return None
    info = CATALOGUE[Metric(m.name)]
    arg_span = m.arg_span or m.span
    if info.arity is Arity.NONE and m.arg is not None:
        bag.error(f"'{m.name}' takes no argument", arg_span)
        return None
    if info.arity is Arity.CLASS and m.arg is None:
        bag.error(f"'{m.name}' needs a class, like '{m.name}(all)' or "
                  f"'{m.name}({classes[0] if classes else 'chat'})'", m.span)
        return None
    if info.arity is Arity.POOL:
        if m.arg not in POOLS:
            got = f"'{m.arg}'" if m.arg else "nothing"
            bag.error(f"'spread' takes 'prefill' or 'decode', not {got}"
                      f"{did_you_mean(m.arg or '', POOLS)}", arg_span)
            return None
    elif m.arg is not None and m.arg != "all" and m.arg not in classes:
        bag.error(f"unknown class '{m.arg}'{did_you_mean(m.arg, classes)}", arg_span)
        return None
    return info


@dataclass
class _Typed:
    expr: Expr
    dim: Dim
    uses_all: bool
    has_ratio: bool
    is_zero: bool = False


def _type(
    e: sx.SyntaxExpr, classes: Sequence[str], cluster: Cluster | None, bag: DiagnosticBag,
    ranged: bool = True,
) -> _Typed | None:
    """Type an expression; `ranged` checks each literal against the slo constant range
    (a penalty has a range of its own)."""
    if isinstance(e, sx.Quantity):
        v = quantity_value(e, bag)
        if v is None:
            return None
        value = v.value * (cluster.gpus if v.per_gpu and cluster is not None else 1)
        if ranged and not in_range(None, value, e.span, bag, "slo constant", zero_ok=True):
            return None
        return _Typed(Const(value, e.span), v.dim, False, False, value == 0.0)
    if isinstance(e, sx.Metric):
        info = _check_metric(e, classes, bag)
        if info is None:
            return None
        return _Typed(MetricRef(e.name, e.arg, e.span), info.dim, e.arg == "all", info.ratio)
    if isinstance(e, sx.Negate):
        t = _type(e.operand, classes, cluster, bag, ranged)
        return None if t is None else _Typed(Neg(t.expr, e.span), t.dim, t.uses_all,
                                              t.has_ratio, t.is_zero)
    left = _type(e.left, classes, cluster, bag, ranged)
    right = _type(e.right, classes, cluster, bag, ranged)
    if left is None or right is None:
        return None
    op: Literal["+", "-", "*", "/"]
    if e.op == "+":
        op = "+"
    elif e.op == "-":
        op = "-"
    elif e.op == "*":
        op = "*"
    else:
        op = "/"
    if op in "+-":
        dim = _common_dim(left, right, "add" if op == "+" else "subtract", e, bag)
        if dim is None:
            return None
    else:
        if op == "/" and right.is_zero:
            bag.error("division by zero", e.right.span)
            return None
        dim = left.dim * right.dim if op == "*" else left.dim / right.dim
    node = BinOp(op, left.expr, right.expr, e.span)
    return _Typed(node, dim, left.uses_all or right.uses_all, left.has_ratio or right.has_ratio)


def _common_dim(
    left: _Typed, right: _Typed, verb: str, where: sx.Binary | sx.Constraint, bag: DiagnosticBag
) -> Dim | None:
    """Dimensions must agree; a literal zero fits any dimension."""
    if left.dim == right.dim or right.is_zero:
        return left.dim
    if left.is_zero:
        return right.dim
    bag.error(f"cannot {verb} {left.dim.describe()} and {right.dim.describe()}", where.span)
    return None


_DISPLAY = {TIME: ("ms", 1e-3), NUMBER: ("%", 0.01), RATE: ("req/s", 1.0),
            MONEY_RATE: ("money/s", 1.0)}


_ALL = re.compile(r"\(\s*all\s*\)")
_SHARES = ("abandonment", "mixed_gpus")


def _single_metric(t: _Typed) -> MetricRef | None:
    return t.expr if isinstance(t.expr, MetricRef) else None


def _fraction_in_range(lhs: _Typed, rhs: _Typed, c: sx.Constraint, bag: DiagnosticBag) -> bool:
    """A share (abandonment, mixed_gpus, spread(prefill)) bounded by a number outside 0–1 is
    almost always a missing '%' (`abandonment(a) <= 5`), so it is an error, not a no-op."""
    for side, other in ((lhs, rhs), (rhs, lhs)):
        m = _single_metric(side)
        if m is None or not isinstance(other.expr, Const):
            continue
        is_share = m.name in _SHARES or (m.name == "spread" and m.arg == "prefill")
        if is_share and not 0.0 <= other.expr.value <= 1.0:
            bag.error(f"'{m.name}' is a share between 0 and 1 (0 % to 100 %), so "
                      f"{other.expr.value:g} cannot bound it", other.expr.span or c.span,
                      hint="write a percentage with '%', like '5 %'")
            return False
    return True


def _warn_unreachable_tpot(
    lhs: _Typed, rhs: _Typed, c: sx.Constraint, cluster: Cluster | None, bag: DiagnosticBag
) -> None:
    """A TPOT bound below τ_solo can be met only by serving nobody of that class."""
    m = _single_metric(lhs)
    if (cluster is None or m is None or m.name != "tpot" or c.op != "<="
            or not isinstance(rhs.expr, Const)):
        return
    if rhs.expr.value < cluster.iteration.tau_solo:
        who = f"class '{m.arg}'" if m.arg else "any class"
        bag.warning(f"the bound is below the fastest decode (τ_solo = "
                    f"{cluster.iteration.tau_solo * 1e3:g} ms): the plan can meet it only by "
                    f"serving none of {who}", c.span)


def _warn_unreachable_ttft(
    lhs: _Typed, rhs: _Typed, c: sx.Constraint, cluster: Cluster | None,
    prompts: Mapping[str, float], bag: DiagnosticBag,
) -> None:
    """TTFT includes the class's own prefill, `P·τ/C` at the policy's chunk, so a bound below
    it can be met by no plan at all (not even one that admits nobody)."""
    m = _single_metric(lhs)
    if (cluster is None or m is None or m.name != "ttft" or c.op != "<="
            or not isinstance(rhs.expr, Const)):
        return
    names = list(prompts) if m.arg == "all" else [n for n in prompts if n == m.arg]
    for name in names:
        prefill = float(prefill_time(prompts[name], cluster))
        if rhs.expr.value < prefill:
            bag.warning(f"the bound is below the prefill time of class '{name}' alone "
                        f"(P·τ/C = {prefill * 1e3:.4g} ms at chunk {cluster.chunk:g} tokens): "
                        "no plan can meet it", c.span,
                        hint="raise the bound, or shorten the prefill: a larger chunk or a "
                             "faster iteration")


def _span_text(lines: Sequence[str], span: Span) -> str:
    """The source text a span covers (a constraint may share its line with others)."""
    if span.line > len(lines):
        return ""
    if span.line == span.end_line:
        return lines[span.line - 1][span.column - 1 : span.end_column - 1]
    parts = [lines[span.line - 1][span.column - 1 :]]
    parts += lines[span.line : span.end_line - 1]
    parts.append(lines[span.end_line - 1][: span.end_column - 1])
    return " ".join(parts)


def _expand_all(e: Expr, cls: str) -> Expr:
    if isinstance(e, MetricRef):
        return MetricRef(e.name, cls, e.span) if e.arg == "all" else e
    if isinstance(e, BinOp):
        return BinOp(e.op, _expand_all(e.left, cls), _expand_all(e.right, cls), e.span)
    if isinstance(e, Neg):
        return Neg(_expand_all(e.operand, cls), e.span)
    return e


def check_slo_block(
    block: sx.SloBlock,
    classes: Sequence[str],
    cluster: Cluster | None,
    source: str,
    bag: DiagnosticBag,
    prompts: Mapping[str, float] | None = None,
) -> list[SloConstraint]:
    """The block's constraints, `all` expanded; `prompts` (prompt tokens per checked class)
    lets bounds that no plan can meet be warned about."""
    out: list[SloConstraint] = []
    lines = source.splitlines()
    for c in block.constraints:
        try:
            lhs = _type(c.lhs, classes, cluster, bag)
            rhs = _type(c.rhs, classes, cluster, bag)
        except RecursionError:
            bag.error(TOO_DEEP, c.span)
            continue
        penalty = 0.0
        if c.penalty is not None:
            if not c.soft:
                bag.error("'penalty' only applies to a soft constraint; write 'soft' first",
                          c.penalty.span)
            p = _type(c.penalty, classes, cluster, bag, ranged=False)
            if p is not None:
                has_unit = isinstance(c.penalty, sx.Quantity) and (
                    c.penalty.unit is not None or c.penalty.pers)
                if (has_unit or not isinstance(p.expr, Const) or p.dim != NUMBER
                        or p.expr.value < 0):
                    bag.error("a penalty is a non-negative number (money per unit of "
                              "violation)", c.penalty.span)
                elif in_range("the penalty", p.expr.value, c.penalty.span, bag, "penalty",
                              zero_ok=True):
                    penalty = p.expr.value
        elif c.soft:
            bag.error("a soft constraint needs 'penalty <number>'", c.span)
        if lhs is None or rhs is None:
            continue
        if _common_dim(lhs, rhs, "compare", c, bag) is None:
            if {lhs.dim, rhs.dim} == {TIME, TIME_PER_TOKEN}:
                bag.items[-1] = Diagnostic(
                    bag.items[-1].message, c.span,
                    hint="tpot is written as a time, per output token implied: 'tpot <= 30 ms'")
            continue
        if not _fraction_in_range(lhs, rhs, c, bag):
            continue
        _warn_unreachable_tpot(lhs, rhs, c, cluster, bag)
        _warn_unreachable_ttft(lhs, rhs, c, cluster, prompts or {}, bag)
        if c.soft and (lhs.has_ratio or rhs.has_ratio):
            bag.error("a ratio metric (tpot) may not appear in a soft constraint", c.span)
            continue
        text = _span_text(lines, c.span)
        op: Op = "<=" if c.op == "<=" else ">=" if c.op == ">=" else "=="
        base = " ".join(text.split())
        dim = lhs.dim if not lhs.is_zero else rhs.dim
        unit, scale = _DISPLAY.get(dim, (dim.describe(), 1.0))
        if dim == NUMBER and "abandonment" not in base and "mixed_gpus" not in base:
            unit, scale = "", 1.0  # spreads are GPU shares or decode streams, not percentages
        if lhs.uses_all or rhs.uses_all:
            for cls in classes:
                out.append(SloConstraint(
                    label=_ALL.sub(f"({cls})", base), lhs=_expand_all(lhs.expr, cls), op=op,
                    rhs=_expand_all(rhs.expr, cls), soft=c.soft, penalty=penalty, text=text,
                    span=c.span, unit=unit, unit_scale=scale))
        else:
            out.append(SloConstraint(label=base, lhs=lhs.expr, op=op, rhs=rhs.expr,
                                     soft=c.soft, penalty=penalty, text=text, span=c.span,
                                     unit=unit, unit_scale=scale))
    return out
