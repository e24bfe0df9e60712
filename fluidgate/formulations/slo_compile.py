"""Compile `SloConstraint`s into linear rows over named LP variables, with SymPy.

Each side becomes a SymPy expression built from the checked tree (never from source text).
Everything moves to one side as `e ≤ s` (or `= s`), where `s` is a slack symbol at 0;
`together` exposes the denominators, which must keep one sign (all coefficients of one sign
over non-negative quantities, as for `tpot`); they are multiplied out and the numerator must
be linear. Keeping `s` symbolic gives how the row moves when the constraint is loosened by
one unit, which turns the row's dual into a shadow price in the constraint's own units.

SymPy is slow, and policies repeat shapes (`ttft(all) <= 2 s` is K rows of one shape), so a
*template* is compiled per shape: classes are slots with symbolic parameters (λ, θ, μ, ...),
constants are symbols unless they sit in a denominator (where their sign matters), and the
coefficients are lambdified. Each concrete constraint is then a few float evaluations.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fluidgate import metrics as mx
from fluidgate.diagnostics import Diagnostic, Span
from fluidgate.formulations.columns import CLASS_VARS, SPREAD_VARS, Column
from fluidgate.metrics import ClassFlow, ClassParams, Metric, Pool
from fluidgate.model import Const, Expr, MetricRef, Neg, Policy, SloConstraint

CLASS_PARAMS = tuple(f.name for f in dataclasses.fields(ClassParams))


# Cluster-wide metrics are sums over classes; a template keeps each as one symbol (so its shape
# does not depend on the number of classes) and expands it into per-class terms when
# instantiated (`SloCompiler._summand`).
AGGREGATES = ("mixed_share", "revenue_pg", "tpot_num", "tpot_den")

# A term of a template row: a per-class variable in a slot (`Column(var, slot)`), a scalar
# variable (`Column(var, None)`), or an aggregate (its name).
_Key = Column | str


class SloCompileError(Exception):
    def __init__(self, diagnostic: Diagnostic) -> None:
        self.diagnostic = diagnostic
        super().__init__(diagnostic.message)


@dataclass(frozen=True)
class LinearRow:
    """`Σ coeffs[c]·c (≤ | =) rhs` over LP columns.

    `slack_constant + Σ slack_gradient[c]·c` is ∂(row)/∂s; at the optimum, shadow price =
    −dual · that gradient at x*. A hard row with no coefficients holds whatever the plan
    (e.g. an abandonment cap on a class without patience): `trivial`.
    """

    slo: SloConstraint
    coeffs: dict[Column, float]
    rhs: float
    equality: bool
    slack_constant: float
    slack_gradient: dict[Column, float]
    uses_spread: tuple[Pool, ...]

    @property
    def trivial(self) -> bool:
        return not self.slo.soft and not any(self.coeffs.values())


@dataclass
class _Template:
    slots: int
    n_consts: int
    row_fns: dict[_Key, Callable[..., float]]  # term -> coefficient fn
    const_fn: Callable[..., float]
    grad_const_fn: Callable[..., float]
    grad_fns: dict[_Key, Callable[..., float]]
    spreads: tuple[Pool, ...]


def _shape(e: Expr, slots: dict[str, int], consts: list[float], in_den: bool) -> tuple[Any, ...]:
    """A hashable shape: class names → slot numbers, constants → symbols outside denominators."""
    if isinstance(e, Const):
        if in_den:
            return ("k", e.value)
        consts.append(e.value)
        return ("c", len(consts) - 1)
    if isinstance(e, MetricRef):
        slot = None
        if e.arg is not None and e.name != "spread":
            slot = slots.setdefault(e.arg, len(slots))
        return ("m", e.name, slot if slot is not None else e.arg)
    if isinstance(e, Neg):
        return ("neg", _shape(e.operand, slots, consts, in_den))
    right_den = in_den or e.op == "/"
    return (e.op, _shape(e.left, slots, consts, in_den), _shape(e.right, slots, consts, right_den))


class SloCompiler:
    """Compiles the SLOs of one policy; holds the template cache for that policy only."""

    def __init__(self, policy: Policy) -> None:
        import sympy

        self.sp = sympy
        self.policy = policy
        self.index = {c.name: i for i, c in enumerate(policy.classes)}
        self.params = [ClassParams.of(policy.cluster, c) for c in policy.classes]
        # the templates' class arguments, in CLASS_PARAMS order, once per class
        self._param_values = [[float(getattr(p, name)) for name in CLASS_PARAMS]
                              for p in self.params]
        self._templates: dict[tuple[Any, ...], _Template] = {}
        self._errors: dict[tuple[Any, ...], Diagnostic] = {}
        self._terms: dict[Any, _Key] = {}  # SymPy symbol -> the LP term it stands for
        self._aggregates: dict[tuple[str, int], list[tuple[Column, float]]] = {}

    # --- symbolic building blocks ------------------------------------------------------
    def _sym(self, name: str, positive: bool = False) -> Any:
        if positive:
            return self.sp.Symbol(name, positive=True)
        return self.sp.Symbol(name, nonnegative=True)

    def _term(self, name: str, key: _Key) -> Any:
        sym = self._sym(name)
        self._terms[sym] = key
        return sym

    def _p(self, name: str, slot: int) -> Any:
        return self._sym(f"{name}_{slot}", positive=name != "theta")

    def _flow(self, slot: int) -> tuple[ClassParams, ClassFlow]:
        """The class in `slot` as symbols: its parameters and the flow of its LP variables."""
        p = ClassParams(*(self._p(name, slot) for name in CLASS_PARAMS))
        cols = [self._term(f"{v.value}__{slot}", Column(v, slot)) for v in CLASS_VARS]
        return p, mx.plan_flow(p, *cols)

    def _metric(self, name: str, arg: Any) -> Any:
        c = self.policy.cluster
        n = c.gpus
        metric = Metric(name)
        if metric is Metric.MIXED_GPUS:
            return self._term("mixed_share", "mixed_share")
        if metric is Metric.REVENUE:
            return n * self._term("revenue_pg", "revenue_pg")
        if metric is Metric.SPREAD:
            hi, lo, _ = SPREAD_VARS[arg]
            return self._term(hi.value, Column(hi)) - self._term(lo.value, Column(lo))
        if metric is Metric.TPOT and arg is None:
            return mx.tpot(self._term("tpot_num", "tpot_num"), self._term("tpot_den", "tpot_den"))
        p, f = self._flow(arg)
        if metric is Metric.RATE:
            return mx.rate(f, n)
        if metric is Metric.ADMITTED:
            return mx.admitted(f, n)
        if metric is Metric.SERVED:
            return mx.served(f, n)
        if metric is Metric.ABANDONMENT:
            return mx.abandonment(f)
        if metric is Metric.WAIT:
            return mx.wait(f)
        if metric is Metric.TTFT:
            return mx.ttft(f, p.prompt, c)
        if metric is Metric.TPOT:
            return mx.tpot(f.decoding, mx.token_rate(f, c))
        raise AssertionError(f"metric {name} has no linear form")

    def _build(self, shape: tuple[Any, ...]) -> Any:
        sp = self.sp
        tag = shape[0]
        if tag == "k":
            return sp.Float(shape[1])
        if tag == "c":
            return sp.Symbol(f"k_{shape[1]}", real=True)
        if tag == "m":
            return self._metric(shape[1], shape[2])
        if tag == "neg":
            return -self._build(shape[1])
        left, right = self._build(shape[1]), self._build(shape[2])
        if tag == "+":
            return left + right
        if tag == "-":
            return left - right
        if tag == "*":
            return left * right
        if right.is_zero:  # SymPy ≥ 1.13: Float(0.0) == 0 is False, so ask is_zero
            raise ValueError("division by zero")
        return left / right

    # --- templates -----------------------------------------------------------------------
    def _compile_template(
        self, key: tuple[Any, ...], slots: int, n_consts: int, span: Span | None
    ) -> _Template:
        sp = self.sp
        op, soft, lhs_shape, rhs_shape = key
        s = sp.Symbol("slack__", real=True)
        try:
            lhs, rhs = self._build(lhs_shape), self._build(rhs_shape)
        except ValueError:
            raise SloCompileError(Diagnostic("division by zero", span)) from None
        e = (rhs - lhs if op == ">=" else lhs - rhs) - s
        num, den = sp.fraction(sp.together(e))
        var_syms = sorted(
            (x for x in (num.free_symbols | den.free_symbols) if x in self._terms), key=str
        )
        den_vars = [v for v in var_syms if v in den.free_symbols]
        sign = _sign(sp, den, den_vars)
        if sign is None:
            raise SloCompileError(Diagnostic(
                "this constraint divides by an expression whose sign is not fixed, so it "
                "cannot be multiplied out into a linear constraint", span,
                hint="divide only by constants or by metrics that are never negative"))
        if soft and den_vars:
            raise SloCompileError(Diagnostic(
                "a soft constraint may not divide by a metric (its violation would not be in "
                "the constraint's units)", span))
        num = sp.expand(num * sign) if den_vars else sp.expand(num / den)
        row0 = num.subs(s, 0)
        poly = sp.Poly(row0, *var_syms) if var_syms else None
        if poly is not None and poly.total_degree() > 1:
            raise SloCompileError(Diagnostic(
                "this constraint is not linear in the plan: it multiplies quantities that both "
                "depend on the solution", span,
                hint="bound each metric separately, or scale by constants only"))
        grad = sp.expand(sp.diff(num, s))
        params = [self._p(p, j) for j in range(slots) for p in CLASS_PARAMS]
        consts = [sp.Symbol(f"k_{i}", real=True) for i in range(n_consts)]
        args = params + consts

        def fn(expr: Any) -> Callable[..., float]:
            return sp.lambdify(args, expr, modules="math")  # type: ignore[no-any-return]

        zero = {v: 0 for v in var_syms}
        row_fns = {self._terms[v]: fn(row0.coeff(v)) for v in var_syms if row0.coeff(v) != 0}
        grad_poly = sp.Poly(grad, *var_syms) if var_syms else None
        grad_fns = {self._terms[v]: fn(grad.coeff(v)) for v in var_syms if grad.coeff(v) != 0}
        if grad_poly is not None and grad_poly.total_degree() > 1:  # pragma: no cover
            raise SloCompileError(Diagnostic("internal: slack gradient is not linear", span))
        spreads = tuple(Pool(p) for p, (hi, _, _) in SPREAD_VARS.items() if Column(hi) in row_fns)
        return _Template(slots, n_consts, row_fns, fn(row0.subs(zero)), fn(grad.subs(zero)),
                         grad_fns, spreads)

    def compile(self, slo: SloConstraint) -> LinearRow:
        """Linearise one SLO or raise `SloCompileError` saying why it is not linear."""
        slots: dict[str, int] = {}
        consts: list[float] = []
        key = (slo.op, slo.soft, _shape(slo.lhs, slots, consts, False),
               _shape(slo.rhs, slots, consts, False))
        if key in self._errors:
            err = self._errors[key]
            raise SloCompileError(Diagnostic(err.message, slo.span, hint=err.hint))
        tpl = self._templates.get(key)
        if tpl is None:
            try:
                tpl = self._compile_template(key, len(slots), len(consts), slo.span)
            except SloCompileError as exc:
                self._errors[key] = exc.diagnostic
                raise
            self._templates[key] = tpl
        ordered = sorted(slots, key=slots.__getitem__)
        args = [v for name in ordered for v in self._class_params(self.index[name])] + consts
        coeffs: dict[Column, float] = {}
        for term, f in tpl.row_fns.items():
            self._add(coeffs, term, float(f(*args)), ordered)
        slack_constant = float(tpl.grad_const_fn(*args))
        gradient: dict[Column, float] = {}
        for term, f in tpl.grad_fns.items():
            self._add(gradient, term, float(f(*args)), ordered)
        for pool in tpl.spreads:
            hi, lo, _ = SPREAD_VARS[pool]
            if slo.op == "==" or coeffs.get(Column(hi), 0.0) < 0 or coeffs.get(Column(lo),
                                                                                 0.0) > 0:
                raise SloCompileError(Diagnostic(
                    f"spread({pool}) can only be bounded from above (a largest gap is convex, "
                    "a smallest gap is not)", slo.span))
        rhs = -float(tpl.const_fn(*args))
        if not all(math.isfinite(v) for v in (rhs, slack_constant, *coeffs.values(),
                                              *gradient.values())):
            raise SloCompileError(Diagnostic("a number in this constraint is too large to "
                                             "represent", slo.span))
        if not slo.soft and not any(coeffs.values()):
            holds = rhs == 0.0 if slo.op == "==" else rhs >= 0.0
            if not holds:
                raise SloCompileError(Diagnostic(
                    "this constraint can never hold: it does not depend on the plan and is "
                    "false for these classes", slo.span))
        return LinearRow(slo, coeffs, rhs, slo.op == "==", slack_constant, gradient,
                         tpl.spreads)

    def _class_params(self, i: int) -> list[float]:
        return self._param_values[i]

    def _add(self, out: dict[Column, float], term: _Key, value: float,
             ordered: list[str]) -> None:
        """Accumulate a template coefficient onto concrete LP columns."""
        if value == 0.0:
            return
        if isinstance(term, str):
            for col, coef in self._aggregate(term):
                out[col] = out.get(col, 0.0) + value * coef
            return
        col = term if term.cls_index is None else Column(term.var,
                                                     self.index[ordered[term.cls_index]])
        out[col] = out.get(col, 0.0) + value

    def _summand(self, name: str, i: int, f: ClassFlow) -> Any:
        """Class i's term in the cluster-wide sum `name`, from the metric's definition."""
        pol = self.policy
        if name == "mixed_share":
            return mx.mixed_share([f])
        if name == "revenue_pg":
            return mx.class_revenue(f, pol.classes[i], pol.pricing, pol.cluster)
        if name == "tpot_num":
            return f.decoding
        return mx.token_rate(f, pol.cluster)

    def _aggregate(self, name: str) -> list[tuple[Column, float]]:
        """The per-class terms of a cluster-wide sum, read off the metric's own definition
        (it is linear in the LP variables, so its coefficients are its values at unit
        vectors)."""
        out: list[tuple[Column, float]] = []
        for i, p in enumerate(self.params):
            cached = self._aggregates.get((name, i))
            if cached is None:
                cached = []
                for var in CLASS_VARS:
                    unit = [1.0 if v is var else 0.0 for v in CLASS_VARS]
                    coef = float(self._summand(name, i, mx.plan_flow(p, *unit)))
                    if coef != 0.0:
                        cached.append((Column(var, i), coef))
                self._aggregates[(name, i)] = cached
            out += cached
        return out


def _sign(sp: Any, den: Any, den_vars: list[Any]) -> int | None:
    """+1 or −1 when `den` keeps one sign over non-negative variables; None otherwise."""
    if not den_vars:
        if den.is_positive:
            return 1
        if den.is_negative:
            return -1
        return None
    coeffs = sp.Poly(sp.expand(den), *den_vars).coeffs()
    if all(c.is_nonnegative for c in coeffs):
        return 1
    if all(c.is_nonpositive for c in coeffs):
        return -1
    return None


@dataclass
class CompiledSlos:
    rows: list[LinearRow] = field(default_factory=list)
    errors: list[Diagnostic] = field(default_factory=list)


def compile_all(policy: Policy) -> CompiledSlos:
    """Compile every SLO, collecting all errors (one per source line) in one pass."""
    compiler = SloCompiler(policy)
    out = CompiledSlos()
    for slo in policy.slos:
        try:
            try:
                out.rows.append(compiler.compile(slo))
            except RecursionError:
                raise SloCompileError(Diagnostic(
                    "this expression is too deeply nested to compile (a sum or product of "
                    "about a thousand terms); split it into several constraints", slo.span)
                ) from None
        except SloCompileError as exc:
            if all(d.span != exc.diagnostic.span for d in out.errors):
                out.errors.append(exc.diagnostic)
    return out
