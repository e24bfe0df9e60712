"""A second independent formulation, well scaled by construction, for extreme policies.

`independent.py` writes DESIGN.md §2 in fluidgate's own variables, so at extreme values it
meets the same numerical trouble (a rate of 1e-10 next to a bound of 1e-9). Here every
class is described by the *fractions of its arrivals* that take each path, which are
numbers between 0 and 1 whatever the policy's units:

    a  admitted (prefilled)          p  abandon before prefill     (a + p = 1)
    m  decoded on mixed GPUs         s  decoded on solo GPUs
    d  abandon while waiting for a decode slot                      (a = m + s + d)

Per GPU, the prefill share is `x = λa/μ_p`, the decode streams `y_m = λm/μ_m` and
`y_s = λs/μ_s`, and the queues `q_p = λp/θ`, `q_d = λd/θ`, so the capacity rows are sums of
`(λ/μ)·fraction` and each is divided by its largest coefficient before SciPy sees it.
Shares no code with fluidgate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linprog


@dataclass
class Klass:
    rate: float  # per GPU
    prompt: float
    output: float
    patience: float | None
    c_in: float  # per token
    c_out: float
    weight: float = 1.0


@dataclass
class Spec:
    gpus: int
    B: int
    C: float
    alpha: float
    beta: float
    tau_solo: float
    classes: list[Klass]
    pricing: str = "bundled"
    abandonment_max: float | None = None  # every class
    abandonment_penalty: float | None = None  # soft when set
    ttft_max: float | None = None  # every class with a patience
    served_min: float | None = None  # class 0, cluster-wide requests/s
    tpot_max: float | None = None  # cluster-wide
    spread_prefill_max: float | None = None  # largest gap of x_i/w_i between classes
    objective: str = "revenue"  # revenue | throughput | served
    extra: list[str] = field(default_factory=list)


@dataclass
class Answer:
    status: str  # optimal | infeasible
    objective: float | None = None
    plan: np.ndarray | None = None


@dataclass
class Lp:
    """`max c·f` s.t. `A_ub f ≤ b_ub`, `A_eq f = b_eq`, `0 ≤ f ≤ upper` (unnormalised)."""

    c: np.ndarray
    A_ub: np.ndarray
    b_ub: np.ndarray
    A_eq: np.ndarray
    b_eq: np.ndarray
    upper: np.ndarray  # inf where unbounded; 0 where a fraction is impossible
    cap: np.ndarray  # the largest value each fraction can take (used to scale columns)


def build(spec: Spec) -> Lp:
    K = len(spec.classes)
    tau = spec.alpha + spec.beta * spec.C
    gamma = 1.0 / spec.tau_solo
    lam = np.array([c.rate for c in spec.classes])
    P = np.array([c.prompt for c in spec.classes])
    D = np.array([c.output for c in spec.classes])
    theta = np.array([0.0 if c.patience is None else 1.0 / c.patience for c in spec.classes])
    # per-GPU resources one unit of each fraction uses
    share = lam * P * tau / spec.C  # λ/μ_p
    mixed = lam * D * tau  # λ/μ_m
    solo = lam * D / gamma  # λ/μ_s
    # columns: a, p, m, s, d per class (5K), then one violation per class when soft
    soft = spec.abandonment_penalty is not None and spec.abandonment_max is not None
    n = 5 * K + (K if soft else 0)
    A, P_, M, S, Dd = (np.arange(K) * 5 + k for k in range(5))
    V = 5 * K + np.arange(K)
    c = np.zeros(n)
    if spec.objective == "served":  # completions per GPU
        c[M] = c[S] = lam
    elif spec.objective == "throughput":  # prompt and output tokens of completed requests
        c[M] = c[S] = (P + D) * lam
    elif spec.pricing == "bundled":
        w = np.array([k.c_in * k.prompt + k.c_out * k.output for k in spec.classes])
        c[M] = c[S] = w * lam
    else:
        c[A] = [k.c_in * k.prompt * r for k, r in zip(spec.classes, lam, strict=True)]
        c[M] = c[S] = [k.c_out * k.output * r for k, r in zip(spec.classes, lam, strict=True)]
    if soft:
        assert spec.abandonment_penalty is not None
        c[V] = -spec.abandonment_penalty
    ub: list[tuple[np.ndarray, float]] = []
    eq: list[tuple[np.ndarray, float]] = []

    def row(pairs: list[tuple[object, object]]) -> np.ndarray:
        r = np.zeros(n)
        for where, v in pairs:
            r[where] = v  # type: ignore[index]
        return r

    for i in range(K):
        eq.append((row([(A[i], 1.0), (P_[i], 1.0)]), 1.0))
        eq.append((row([(A[i], 1.0), (M[i], -1.0), (S[i], -1.0), (Dd[i], -1.0)]), 0.0))
    ub.append((row([(A, share)]), 1.0))
    ub.append((row([(M, mixed), (A, -(spec.B - 1) * share)]), 0.0))
    ub.append((row([(S, solo), (A, spec.B * share)]), float(spec.B)))
    if spec.abandonment_max is not None:
        for i in range(K):
            pairs: list[tuple[object, object]] = [(P_[i], 1.0), (Dd[i], 1.0)]
            if soft:
                pairs.append((V[i], -1.0))
            ub.append((row(pairs), spec.abandonment_max))
    if spec.ttft_max is not None:  # wait = q_p/λ = p/θ, plus the prefill itself
        for i in range(K):
            if theta[i] > 0:
                ub.append((row([(P_[i], 1.0)]), theta[i] * (spec.ttft_max - P[i] * tau / spec.C)))
    if spec.served_min is not None:  # n·λ_0·(m + s) ≥ r
        ub.append((row([(M[0], -1.0), (S[0], -1.0)]), -spec.served_min / (spec.gpus * lam[0])))
    if spec.tpot_max is not None:  # Σ(y_m + y_s) ≤ T·Σ(y_m/τ + γ·y_s)
        T = spec.tpot_max
        ub.append((row([(M, mixed * (1 - T / tau)), (S, solo * (1 - T * gamma))]), 0.0))
    if spec.spread_prefill_max is not None:  # x_i/w_i − x_j/w_j ≤ s, x = share·a
        wts = np.array([k.weight for k in spec.classes])
        for i in range(K):
            for j in range(K):
                if i != j:
                    ub.append((row([(A[i], share[i] / wts[i]), (A[j], -share[j] / wts[j])]),
                               spec.spread_prefill_max))
    upper = np.full(n, np.inf)
    upper[: 5 * K] = 1.0
    for i in range(K):
        if theta[i] == 0.0:  # nobody leaves
            upper[P_[i]] = upper[Dd[i]] = 0.0
    cap = np.ones(n)
    cap[A] = np.minimum(1.0, 1.0 / share)
    cap[M] = np.minimum(cap[A], (spec.B - 1) * np.minimum(1.0, share) / mixed)
    cap[S] = np.minimum(cap[A], spec.B / solo)
    cap[Dd] = cap[A]
    return Lp(c, np.array([r for r, _ in ub]), np.array([b for _, b in ub]),
              np.array([r for r, _ in eq]), np.array([b for _, b in eq]), upper, cap)


def solve(spec: Spec) -> Answer:
    """Solve with each fraction in units of its cap and each row in units of its size."""
    lp = build(spec)
    d = lp.cap
    A_ub, b_ub = lp.A_ub * d, lp.b_ub.copy()
    for k in range(len(b_ub)):
        r = A_ub[k]
        capacity = float(-r[r < 0].sum())
        size = abs(b_ub[k]) if b_ub[k] != 0 else capacity if capacity > 0 else float(
            np.abs(r).max() or 1.0)
        A_ub[k] /= size
        b_ub[k] /= size
    A_eq = lp.A_eq * d
    norm = np.abs(A_eq).max(axis=1)
    A_eq, b_eq = A_eq / norm[:, None], lp.b_eq / norm
    c = lp.c * d
    top = float(np.abs(c).max()) or 1.0
    bounds = [(0.0, None if not np.isfinite(u) else u / s) for u, s in zip(lp.upper, d,
                                                                         strict=True)]
    res = linprog(-c / top, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq,
                  bounds=bounds, method="highs",
                  options={"primal_feasibility_tolerance": 1e-10,
                           "dual_feasibility_tolerance": 1e-10})
    if res.status == 2:
        return Answer("infeasible")
    if res.status != 0:
        return Answer(f"failed: {res.message}")
    return Answer("optimal", float(-res.fun * top), res.x * d)


def fractions_of(spec: Spec, values: list[dict[str, float]]) -> np.ndarray:
    """A plan given in fluidgate's per-GPU variables, as this formulation's fractions."""
    tau = spec.alpha + spec.beta * spec.C
    gamma = 1.0 / spec.tau_solo
    out: list[float] = []
    for k, v in zip(spec.classes, values, strict=True):
        theta = 0.0 if k.patience is None else 1.0 / k.patience
        lam = k.rate
        out += [spec.C * v["x"] / (k.prompt * tau * lam), theta * v["q_p"] / lam,
                v["y_m"] / (k.output * tau * lam), gamma * v["y_s"] / (k.output * lam),
                theta * v["q_d"] / lam]
    return np.array(out)


def evaluate(spec: Spec, f: np.ndarray, violation: np.ndarray | None = None) -> tuple[float, float]:
    """The objective of a plan and its worst relative row residual (rows, bounds)."""
    lp = build(spec)
    K5 = 5 * len(spec.classes)
    full = np.zeros(len(lp.c))
    full[:K5] = f
    if violation is not None:
        full[K5:] = violation
    worst = 0.0
    for A, b, eq in ((lp.A_ub, lp.b_ub, False), (lp.A_eq, lp.b_eq, True)):
        act = A @ full
        size = np.maximum(np.abs(A * full).sum(axis=1), np.abs(b))
        gap = np.abs(act - b) if eq else np.maximum(act - b, 0.0)
        worst = max(worst, float(np.max(np.where(size > 0, gap / np.where(size > 0, size, 1),
                                                 0.0), initial=0.0)))
    over = np.maximum(np.maximum(-full, full - lp.upper), 0.0)
    worst = max(worst, float(np.max(over / np.maximum(lp.cap, 1e-300), initial=0.0)))
    return float(lp.c @ full), worst
