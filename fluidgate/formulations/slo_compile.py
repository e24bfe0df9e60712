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

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fluidgate.diagnostics import Diagnostic, Span
from fluidgate.model import (
    Const,
    Expr,
    MetricRef,
    Neg,
    Policy,
    SloConstraint,
    revenue_coefficients,
    service_rates,
)

CLASS_PARAMS = ("lam", "theta", "prompt", "mu_p", "mu_m", "mu_s")
# aggregate linear forms over all classes, expanded when a template is instantiated
AGGREGATES = ("mixed_share", "revenue_pg", "tpot_num", "tpot_den")
SPREAD_VARS = {"prefill": ("hi_prefill", "lo_prefill"), "decode": ("hi_decode", "lo_decode")}


class SloCompileError(Exception):
    def __init__(self, diagnostic: Diagnostic) -> None:
        self.diagnostic = diagnostic
        super().__init__(diagnostic.message)


@dataclass(frozen=True)
class LinearRow:
    """`Σ coeffs[v]·v (≤ | =) rhs` over variables named like `x__0` or `hi_prefill`.

    `slack_gradient` is ∂(row)/∂s per variable (key "" for the constant part); at the
    optimum, shadow price = −dual · gradient(x*). A hard row with no coefficients holds
    whatever the plan (e.g. an abandonment cap on a class without patience): `trivial`.
    """

    slo: SloConstraint
    coeffs: dict[str, float]
    rhs: float
    equality: bool
    slack_gradient: dict[str, float]
    uses_spread: tuple[str, ...]

    @property
    def trivial(self) -> bool:
        return not self.slo.soft and not any(self.coeffs.values())


@dataclass
class _Template:
    slots: int
    n_consts: int
    row_fns: dict[str, Callable[..., float]]  # var symbol name -> coefficient fn
    const_fn: Callable[..., float]
    grad_fns: dict[str, Callable[..., float]]
    spreads: tuple[str, ...]


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
        self.rates = [service_rates(policy.cluster, c) for c in policy.classes]
        self._templates: dict[tuple[Any, ...], _Template] = {}
        self._errors: dict[tuple[Any, ...], Diagnostic] = {}

    # --- symbolic building blocks ------------------------------------------------------
    def _sym(self, name: str, positive: bool = False) -> Any:
        if positive:
            return self.sp.Symbol(name, positive=True)
        return self.sp.Symbol(name, nonnegative=True)

    def _p(self, name: str, slot: int) -> Any:
        return self._sym(f"{name}_{slot}", positive=name != "theta")

    def _v(self, name: str, slot: int) -> Any:
        return self._sym(f"{name}__{slot}")

    def _metric(self, name: str, arg: Any) -> Any:
        sp, c = self.sp, self.policy.cluster
        n, tau, gamma = c.gpus, c.tau, c.gamma
        if name == "mixed_gpus":
            return self._sym("mixed_share")
        if name == "revenue":
            return n * self._sym("revenue_pg")
        if name == "spread":
            hi, lo = SPREAD_VARS[arg]
            return self._sym(hi) - self._sym(lo)
        if name == "tpot" and arg is None:
            return self._sym("tpot_num") / self._sym("tpot_den")
        j = arg
        x, ym, ys = self._v("x", j), self._v("y_m", j), self._v("y_s", j)
        qp, qd = self._v("q_p", j), self._v("q_d", j)
        lam, theta = self._p("lam", j), self._p("theta", j)
        if name == "rate":
            return n * lam
        if name == "admitted":
            return n * self._p("mu_p", j) * x
        if name == "served":
            return n * (self._p("mu_m", j) * ym + self._p("mu_s", j) * ys)
        if name == "abandonment":
            return theta * (qp + qd) / lam
        if name == "wait":
            return qp / lam
        if name == "ttft":
            return qp / lam + self._p("prompt", j) * sp.Float(tau / c.chunk)
        if name == "tpot":
            return (ym + ys) / (ym / sp.Float(tau) + sp.Float(gamma) * ys)
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
            (x for x in (num.free_symbols | den.free_symbols) if _is_variable(x.name)), key=str
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
        row_fns = {str(v): fn(row0.coeff(v)) for v in var_syms if row0.coeff(v) != 0}
        grad_poly = sp.Poly(grad, *var_syms) if var_syms else None
        grad_fns = {str(v): fn(grad.coeff(v)) for v in var_syms if grad.coeff(v) != 0}
        if grad_poly is not None and grad_poly.total_degree() > 1:  # pragma: no cover
            raise SloCompileError(Diagnostic("internal: slack gradient is not linear", span))
        grad_fns[""] = fn(grad.subs(zero))
        spreads = tuple(p for p, (hi, _) in SPREAD_VARS.items() if hi in row_fns)
        return _Template(slots, n_consts, row_fns, fn(row0.subs(zero)), grad_fns, spreads)

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
        coeffs: dict[str, float] = {}
        for sym, f in tpl.row_fns.items():
            self._add(coeffs, sym, float(f(*args)), ordered)
        gradient: dict[str, float] = {"": float(tpl.grad_fns[""](*args))}
        for sym, f in tpl.grad_fns.items():
            if sym:
                self._add(gradient, sym, float(f(*args)), ordered)
        for pool in tpl.spreads:
            hi, lo = SPREAD_VARS[pool]
            if slo.op == "==" or coeffs.get(hi, 0.0) < 0 or coeffs.get(lo, 0.0) > 0:
                raise SloCompileError(Diagnostic(
                    f"spread({pool}) can only be bounded from above (a largest gap is convex, "
                    "a smallest gap is not)", slo.span))
        rhs = -float(tpl.const_fn(*args))
        if not all(math.isfinite(v) for v in (rhs, *coeffs.values(), *gradient.values())):
            raise SloCompileError(Diagnostic("a number in this constraint is too large to "
                                             "represent", slo.span))
        if not slo.soft and not any(coeffs.values()):
            holds = rhs == 0.0 if slo.op == "==" else rhs >= 0.0
            if not holds:
                raise SloCompileError(Diagnostic(
                    "this constraint can never hold: it does not depend on the plan and is "
                    "false for these classes", slo.span))
        return LinearRow(slo, coeffs, rhs, slo.op == "==", gradient, tpl.spreads)

    def _class_params(self, i: int) -> list[float]:
        cls, r = self.policy.classes[i], self.rates[i]
        return [cls.rate, cls.theta, cls.prompt, r.mu_p, r.mu_m, r.mu_s]

    def _add(self, out: dict[str, float], sym: str, value: float, ordered: list[str]) -> None:
        """Accumulate a template coefficient onto concrete LP variables."""
        if value == 0.0:
            return
        if "__" in sym:
            var, slot = sym.split("__")
            name = f"{var}__{self.index[ordered[int(slot)]]}"
            out[name] = out.get(name, 0.0) + value
            return
        if sym not in AGGREGATES:
            out[sym] = out.get(sym, 0.0) + value
            return
        for name, coef in self._aggregate(sym):
            out[name] = out.get(name, 0.0) + value * coef

    def _aggregate(self, sym: str) -> list[tuple[str, float]]:
        pol = self.policy
        c = pol.cluster
        K = range(len(pol.classes))
        if sym == "mixed_share":
            return [(f"x__{i}", 1.0) for i in K]
        if sym == "tpot_num":
            return [(f"{v}__{i}", 1.0) for i in K for v in ("y_m", "y_s")]
        if sym == "tpot_den":
            return [t for i in K for t in ((f"y_m__{i}", 1.0 / c.tau), (f"y_s__{i}", c.gamma))]
        out: list[tuple[str, float]] = []
        for i, cls in enumerate(pol.classes):
            k = revenue_coefficients(c, cls, pol.pricing)
            out += [(f"x__{i}", k.x), (f"y_m__{i}", k.y_m), (f"y_s__{i}", k.y_s)]
        return out


def _is_variable(name: str) -> bool:
    return ("__" in name and not name.startswith("slack")) or name in AGGREGATES or any(
        name in pair for pair in SPREAD_VARS.values())


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
