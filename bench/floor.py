"""The floor: the fluid LP of DESIGN.md §2 (and the per-class SLO rows of §3) built straight
from numpy arrays and solved with highspy, sharing no code with fluidgate.

`ClassArrays` is where the floor starts: the class parameters as numpy vectors, in base
units. Everything after that is timed: derived service rates, the objective, the CSC matrix,
the bounds, `Highs()`, `passModel`, `run`, and reading the solution back.

Columns are laid out in blocks `[x, y_m, y_s, q_p, q_d]` (fluidgate interleaves them by
class; the optimum is the same LP, so only the objective is compared).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.generate import SLO_KINDS, PolicySpec

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ClassArrays:
    """The policy as numbers in base units (seconds, tokens, req/s per GPU, money per token)."""

    B: float
    C: float
    tau: float
    gamma: float
    rate: FloatArray
    prompt: FloatArray
    output: FloatArray
    theta: FloatArray
    price_in: FloatArray
    price_out: FloatArray
    # per-class SLOs: kind code (index into SLO_KINDS), class index, bound in base units
    slo_kind: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    slo_cls: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    slo_bound: FloatArray = field(default_factory=lambda: np.zeros(0))


_SCALE = {"ttft": 1.0, "abandonment": 1e-2, "tpot": 1e-3, "wait": 1e-3, "served": 1.0}


def arrays_from_spec(spec: PolicySpec) -> ClassArrays:
    """Untimed: the generator's numbers as vectors in base units."""
    c = spec.cluster
    cls = spec.classes
    pin = [spec.price_input if k.price_input is None else k.price_input for k in cls]
    pout = [spec.price_output if k.price_output is None else k.price_output for k in cls]
    return ClassArrays(
        B=float(c.max_batch),
        C=float(c.chunk),
        tau=c.tau,
        gamma=c.gamma,
        rate=np.array([k.rate for k in cls]),
        prompt=np.array([k.prompt for k in cls], dtype=np.float64),
        output=np.array([k.output for k in cls], dtype=np.float64),
        theta=1.0 / np.array([k.patience for k in cls]),
        price_in=np.array(pin) * 1e-6,
        price_out=np.array(pout) * 1e-6,
        slo_kind=np.array([SLO_KINDS.index(s.kind) for s in spec.slos], dtype=np.int64),
        slo_cls=np.array([s.cls for s in spec.slos], dtype=np.int64),
        slo_bound=np.array([s.bound * _SCALE[s.kind] for s in spec.slos], dtype=np.float64),
    )


@dataclass(frozen=True)
class FloorLP:
    c: FloatArray
    indptr: IntArray
    indices: IntArray
    data: FloatArray
    row_lower: FloatArray
    row_upper: FloatArray
    col_lower: FloatArray
    col_upper: FloatArray

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.row_lower), len(self.c)

    @property
    def nnz(self) -> int:
        return len(self.data)


def build_arrays(a: ClassArrays) -> FloorLP:
    """The LP as CSC arrays: `max c·x` s.t. `row_lower ≤ A x ≤ row_upper`, `x ≥ 0`."""
    K = len(a.rate)
    mu_p = a.C / (a.prompt * a.tau)
    mu_m = 1.0 / (a.output * a.tau)
    mu_s = a.gamma / a.output
    w = a.price_in * a.prompt + a.price_out * a.output
    ar = np.arange(K, dtype=np.int64)
    X, YM, YS, QP, QD = (ar + b * K for b in range(5))
    n_cols = 5 * K
    c = np.zeros(n_cols)
    c[YM] = w * mu_m
    c[YS] = w * mu_s

    # rows: 0 Σx ≤ 1; 1 Σy_m − (B−1)Σx ≤ 0; 2 Σy_s + BΣx ≤ B;
    # 3+i prefill balance; 3+K+i decode balance; 3+2K+s SLO s
    PB, DB = 3 + ar, 3 + K + ar
    ones = np.ones(K)
    rows = [np.zeros(K, np.int64), np.ones(K, np.int64), np.full(K, 2), PB, DB,
            np.ones(K, np.int64), DB, np.full(K, 2), DB, PB, DB]
    cols = [X, X, X, X, X, YM, YM, YS, YS, QP, QD]
    vals = [ones, -(a.B - 1.0) * ones, a.B * ones, mu_p, mu_p, ones, -mu_m, ones, -mu_s,
            a.theta, -a.theta]
    lower = [np.full(3, -np.inf), a.rate, np.zeros(K)]
    upper = [np.array([1.0, 0.0, a.B]), a.rate, np.zeros(K)]

    S = len(a.slo_kind)
    if S:
        base = 3 + 2 * K
        s_idx = np.arange(S, dtype=np.int64)
        k, bound = a.slo_cls, a.slo_bound
        lam = a.rate[k]
        lo = np.full(S, -np.inf)
        hi = np.full(S, np.inf)
        kinds = {name: a.slo_kind == code for code, name in enumerate(SLO_KINDS)}

        def add(mask: npt.NDArray[np.bool_], block: IntArray, coef: FloatArray) -> None:
            rows.append(base + s_idx[mask])
            cols.append(block[k[mask]])
            vals.append(coef)

        m = kinds["ttft"]  # q_p/λ + P·τ/C ≤ T  ⇔  q_p ≤ λ·(T − P·τ/C)
        add(m, QP, np.ones(int(m.sum())))
        hi[m] = lam[m] * (bound[m] - a.prompt[k[m]] * a.tau / a.C)
        m = kinds["wait"]  # q_p/λ ≤ W
        add(m, QP, np.ones(int(m.sum())))
        hi[m] = lam[m] * bound[m]
        m = kinds["abandonment"]  # θ·(q_p + q_d) ≤ a·λ
        add(m, QP, a.theta[k[m]])
        add(m, QD, a.theta[k[m]])
        hi[m] = lam[m] * bound[m]
        m = kinds["tpot"]  # y_m + y_s ≤ T·(y_m/τ + γ·y_s)
        add(m, YM, 1.0 - bound[m] / a.tau)
        add(m, YS, 1.0 - bound[m] * a.gamma)
        hi[m] = 0.0
        m = kinds["served"]  # μ_m·y_m + μ_s·y_s ≥ f·λ  (both sides × n)
        add(m, YM, mu_m[k[m]])
        add(m, YS, mu_s[k[m]])
        lo[m] = lam[m] * bound[m]
        lower.append(lo)
        upper.append(hi)

    r = np.concatenate(rows)
    col = np.concatenate(cols)
    v = np.concatenate(vals)
    order = np.lexsort((r, col))
    indptr = np.zeros(n_cols + 1, dtype=np.int64)
    np.cumsum(np.bincount(col, minlength=n_cols), out=indptr[1:])
    return FloorLP(
        c=c, indptr=indptr, indices=r[order], data=v[order],
        row_lower=np.concatenate(lower), row_upper=np.concatenate(upper),
        col_lower=np.zeros(n_cols), col_upper=np.full(n_cols, np.inf),
    )


def _load(lp: FloorLP, method: str) -> Any:
    import highspy

    h = highspy.Highs()  # type: ignore[no-untyped-call]
    h.setOptionValue("output_flag", False)
    if method in ("simplex", "ipm"):
        h.setOptionValue("solver", method)
    if method == "ipm-nocrossover":  # fluidgate's choice above 100,000 columns
        h.setOptionValue("solver", "ipm")
        h.setOptionValue("run_crossover", "off")
        h.setOptionValue("ipm_optimality_tolerance", 1e-10)
    n_rows, n_cols = lp.shape
    model = highspy.HighsLp()
    model.num_col_ = n_cols
    model.num_row_ = n_rows
    model.sense_ = highspy.ObjSense.kMaximize
    model.col_cost_ = lp.c
    model.col_lower_ = lp.col_lower
    model.col_upper_ = lp.col_upper
    model.row_lower_ = lp.row_lower
    model.row_upper_ = lp.row_upper
    model.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    model.a_matrix_.start_ = lp.indptr.astype(np.int32)
    model.a_matrix_.index_ = lp.indices.astype(np.int32)
    model.a_matrix_.value_ = lp.data
    if h.passModel(model) == highspy.HighsStatus.kError:
        raise RuntimeError("floor: HiGHS rejected the model")
    if h.getNumCol() != n_cols or h.getNumRow() != n_rows:  # a silently empty model
        raise RuntimeError("floor: HiGHS loaded a model of the wrong size")
    return h


@dataclass(frozen=True)
class FloorResult:
    objective: float
    x: FloatArray
    timings: dict[str, float]
    shape: tuple[int, int]
    nnz: int


def solve_floor(a: ClassArrays, method: str = "auto") -> FloorResult:
    """Build and solve; `timings` has arrays, load, run, readback and total (seconds)."""
    import highspy

    t0 = time.perf_counter()
    lp = build_arrays(a)
    t1 = time.perf_counter()
    h = _load(lp, method)
    t2 = time.perf_counter()
    h.run()
    t3 = time.perf_counter()
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        raise RuntimeError(f"floor: HiGHS ended with {h.modelStatusToString(status)}")
    objective = float(h.getInfo().objective_function_value)
    sol = h.getSolution()
    x = np.asarray(sol.col_value, dtype=np.float64)
    duals = np.asarray(sol.row_dual, dtype=np.float64)
    t4 = time.perf_counter()
    assert len(duals) == lp.shape[0]
    timings = {"arrays": t1 - t0, "load": t2 - t1, "run": t3 - t2, "readback": t4 - t3,
               "total": t4 - t0}
    return FloorResult(objective, x, timings, lp.shape, lp.nnz)
