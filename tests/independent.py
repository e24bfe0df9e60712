"""An independent formulation of the fluid LP, written straight from DESIGN.md §2 and §3.

It shares no code with fluidgate's formulation (numpy arrays by hand, solved with SciPy's
`linprog`), so agreement between the two checks the Pyomo model, the SLO compiler and the
solver plumbing at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linprog


@dataclass
class Klass:
    rate: float
    prompt: float
    output: float
    theta: float
    c_in: float
    c_out: float


@dataclass
class Instance:
    B: int
    C: float
    tau: float
    tau_solo: float
    classes: list[Klass]
    pricing: str = "bundled"
    tpot_max: float | None = None  # cluster tpot bound
    spread_prefill_max: float | None = None
    abandonment_max: float | None = None  # every class
    # more rows `Σ coef·var ≤ rhs` over variables named like "q_p:0" (variable:class); `soft`
    # rows also carry a penalty per unit of violation, subtracted from the objective
    extra: list[tuple[dict[str, float], float]] = field(default_factory=list)
    soft: list[tuple[dict[str, float], float, float]] = field(default_factory=list)


@dataclass
class Result:
    status: str
    objective: float | None
    x: np.ndarray | None = None
    y_m: np.ndarray | None = None
    y_s: np.ndarray | None = None
    q_p: np.ndarray | None = None
    q_d: np.ndarray | None = None


def reference_instance() -> Instance:
    return Instance(
        B=16, C=256, tau=0.0174 + 6.2e-5 * 256, tau_solo=0.022,
        classes=[Klass(0.5, 300, 1000, 0.1, 0.1, 0.2), Klass(0.5, 3000, 400, 0.1, 0.1, 0.2)],
    )


def tpot_shadow_price(T: float) -> tuple[float, float]:
    """R* and ∂R*/∂T for a cluster tpot bound, from linprog's marginals."""
    inst = reference_instance()
    inst.tpot_max = T
    res, marginals = _solve(inst)
    assert res.objective is not None and res.y_m is not None and res.y_s is not None
    pi = -marginals[3]  # rows: three capacity rows, then the tpot row
    gamma = 1 / inst.tau_solo
    return res.objective, pi * float(np.sum(res.y_m / inst.tau + gamma * res.y_s))


def solve(inst: Instance) -> Result:
    return _solve(inst)[0]


def _solve(inst: Instance) -> tuple[Result, np.ndarray]:
    K = len(inst.classes)
    gamma = 1 / inst.tau_solo
    # columns: x, ym, ys, qp, qd (K each), then hi, lo
    n_soft = len(inst.soft)
    nv = 5 * K + 2 + n_soft
    X, YM, YS, QP, QD = (slice(k * K, (k + 1) * K) for k in range(5))
    HI, LO = 5 * K, 5 * K + 1
    mu_p = np.array([inst.C / (c.prompt * inst.tau) for c in inst.classes])
    mu_m = np.array([1 / (c.output * inst.tau) for c in inst.classes])
    mu_s = np.array([gamma / c.output for c in inst.classes])
    lam = np.array([c.rate for c in inst.classes])
    th = np.array([c.theta for c in inst.classes])
    cost = np.zeros(nv)
    if inst.pricing == "bundled":
        w = np.array([c.c_in * c.prompt + c.c_out * c.output for c in inst.classes])
        cost[YM], cost[YS] = w * mu_m, w * mu_s
    else:
        cost[X] = [c.c_in * inst.C / inst.tau for c in inst.classes]
        cost[YM] = [c.c_out / inst.tau for c in inst.classes]
        cost[YS] = [c.c_out * gamma for c in inst.classes]
    A_ub: list[np.ndarray] = []
    b_ub: list[float] = []
    A_eq: list[np.ndarray] = []
    b_eq: list[float] = []

    def add(rows: list[np.ndarray], rhs: list[float], terms: list[tuple[object, object]],
            bound: float) -> None:
        r = np.zeros(nv)
        for where, value in terms:
            r[where] = value  # type: ignore[index]
        rows.append(r)
        rhs.append(bound)

    add(A_ub, b_ub, [(X, 1.0)], 1.0)
    add(A_ub, b_ub, [(YM, 1.0), (X, -(inst.B - 1))], 0.0)
    add(A_ub, b_ub, [(YS, 1.0), (X, inst.B)], float(inst.B))
    for i in range(K):
        x, ym, ys, qp, qd = (s.start + i for s in (X, YM, YS, QP, QD))
        add(A_eq, b_eq, [(x, mu_p[i]), (qp, th[i])], lam[i])
        add(A_eq, b_eq, [(x, mu_p[i]), (qd, -th[i]), (ym, -mu_m[i]), (ys, -mu_s[i])], 0.0)
    if inst.tpot_max is not None:
        T = inst.tpot_max
        add(A_ub, b_ub, [(YM, 1 - T / inst.tau), (YS, 1 - T * gamma)], 0.0)
    if inst.spread_prefill_max is not None:
        for i in range(K):
            add(A_ub, b_ub, [(X.start + i, 1.0), (HI, -1.0)], 0.0)
            add(A_ub, b_ub, [(X.start + i, -1.0), (LO, 1.0)], 0.0)
        add(A_ub, b_ub, [(HI, 1.0), (LO, -1.0)], inst.spread_prefill_max)
    if inst.abandonment_max is not None:
        for i in range(K):
            ratio = th[i] / lam[i]
            add(A_ub, b_ub, [(QP.start + i, ratio), (QD.start + i, ratio)],
                inst.abandonment_max)
    blocks = {"x": X, "y_m": YM, "y_s": YS, "q_p": QP, "q_d": QD}

    def named(terms: dict[str, float]) -> list[tuple[object, object]]:
        out: list[tuple[object, object]] = []
        for name, coef in terms.items():
            var, i = name.split(":")
            out.append((blocks[var].start + int(i), coef))
        return out

    for terms, rhs in inst.extra:
        add(A_ub, b_ub, named(terms), rhs)
    for k, (terms, rhs, penalty) in enumerate(inst.soft):
        v = 5 * K + 2 + k
        add(A_ub, b_ub, [*named(terms), (v, -1.0)], rhs)
        cost[v] = -penalty
    bounds = [(0, None)] * (5 * K) + [(None, None), (None, None)] + [(0, None)] * n_soft
    res = linprog(-cost, A_ub=np.array(A_ub), b_ub=np.array(b_ub), A_eq=np.array(A_eq),
                  b_eq=np.array(b_eq), bounds=bounds, method="highs")
    if res.status == 2:
        return Result("infeasible", None), np.array([])
    assert res.status == 0, res.message
    v = res.x
    return (Result("optimal", -res.fun, v[X], v[YM], v[YS], v[QP], v[QD]),
            np.asarray(res.ineqlin.marginals))
