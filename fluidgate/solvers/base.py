"""The solver interface: a matrix LP in, a normalised result out.

Backends see arrays, never Pyomo: the formulation compiles its readable Pyomo model once
(`fluidgate.formulations.matrix`), and every backend solves the same arrays, so the two
solvers cannot disagree about what the model was. Duals are normalised here, in one place:
`row_duals[r]` is ∂(objective)/∂(bound) of row r's active bound, in the maximisation sense,
whatever the backend's own convention.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, overload

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


class TerminationStatus(StrEnum):
    OPTIMAL = "optimal"
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    INFEASIBLE_OR_UNBOUNDED = "infeasible_or_unbounded"
    LIMIT = "limit"
    ERROR = "error"
    # the solver answered, but its answer failed fluidgate's check (fluidgate.verify)
    UNVERIFIED = "unverified"


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do, declared up front so callers choose without trying."""

    duals: bool
    iis: bool  # computes an irreducible infeasible subset natively (fluidgate falls back to
    # deletion filtering over SLO rows, which works with any backend)


@dataclass(frozen=True, slots=True)
class Availability:
    ok: bool
    reason: str = ""


@dataclass(frozen=True)
class CscMatrix:
    """A sparse matrix in compressed-column form, as plain numpy arrays.

    Plain arrays rather than scipy.sparse: HiGHS takes them directly, and importing SciPy
    costs a cold `fluidgate solve` more than the solve itself.
    """

    shape: tuple[int, int]
    indptr: npt.NDArray[np.int64]
    indices: npt.NDArray[np.int64]
    data: FloatArray

    @classmethod
    def from_triplets(
        cls, n_rows: int, n_cols: int, rows: npt.ArrayLike, cols: npt.ArrayLike, vals: npt.ArrayLike
    ) -> CscMatrix:
        r = np.asarray(rows, dtype=np.int64)
        c = np.asarray(cols, dtype=np.int64)
        v = np.asarray(vals, dtype=np.float64)
        order = np.lexsort((r, c))
        r, c, v = r[order], c[order], v[order]
        indptr = np.zeros(n_cols + 1, dtype=np.int64)
        np.cumsum(np.bincount(c, minlength=n_cols), out=indptr[1:])
        return cls((n_rows, n_cols), indptr, r, v)


class IndexedNames(Sequence[str]):
    """Row or column names `component[index]` (or `component` for index None), each made
    when it is read: an LP of 50,000 classes has 350,000 of them, and only the few that a
    failed check reports are ever read."""

    def __init__(self, pairs: Sequence[tuple[str, object]]) -> None:
        self._pairs = pairs

    def __len__(self) -> int:
        return len(self._pairs)

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...
    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        name, index = self._pairs[i]
        return name if index is None else f"{name}[{index}]"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class MatrixLP:
    """`maximise c·x + offset` s.t. `row_lower ≤ A x ≤ row_upper`, `col_lower ≤ x ≤ col_upper`.

    Infinite bounds are ±inf.
    """

    c: FloatArray
    offset: float
    A: CscMatrix
    row_lower: FloatArray
    row_upper: FloatArray
    col_lower: FloatArray
    col_upper: FloatArray
    row_names: Sequence[str] = field(default_factory=list)
    col_names: Sequence[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.row_lower), len(self.c)


@dataclass(frozen=True)
class SolverResult:
    solver: str
    status: TerminationStatus
    message: str
    objective: float | None = None
    x: FloatArray | None = None
    row_duals: FloatArray | None = None
    seconds: float = 0.0
    # for an infeasible LP, row multipliers that prove it (a Farkas ray), in either sign
    # convention: `fluidgate.verify.verify_infeasible` checks it and decides
    farkas: FloatArray | None = None
    # False: an interior-point answer the solver did not move to a vertex (no crossover)
    vertex: bool = True


@dataclass(frozen=True, slots=True)
class SolveOptions:
    time_limit: float | None = None
    method: str = "auto"  # auto | simplex | ipm
    verbose: bool = False
    presolve: bool = True
    # primal and dual feasibility tolerance, in the solver's (well-scaled) units: a share of
    # each row's and column's largest possible value (see fluidgate.solvers.scaling); 1e-9
    # rather than the usual 1e-7 keeps a class served at a billionth of its possible rate
    tolerance: float = 1e-9
    # the solver's own scaling on top of fluidgate's; off in a retry, where it has been
    # seen to trade exactness in one row for conditioning elsewhere
    solver_scaling: bool = True
    # after an interior-point solve, move to a vertex (HiGHS's crossover)? None: the backend
    # decides (HiGHS skips it on large LPs, where it cost 10x the interior point itself);
    # verification checks the answer either way, and a retry turns it on
    crossover: bool | None = None


class SolverUnavailable(Exception):
    """The named solver cannot run here; the message says why and what to do instead."""


class Solver(Protocol):
    name: str
    capabilities: Capabilities

    def available(self) -> Availability:
        """Cheap check (an import, a licence probe); never builds a model."""
        ...

    def solve(self, lp: MatrixLP, options: SolveOptions) -> SolverResult: ...
