"""The solver interface: a matrix LP in, a normalised result out.

Backends see arrays, never Pyomo: the formulation compiles its readable Pyomo model once
(`fluidgate.formulations.matrix`), and every backend solves the same arrays, so the two
solvers cannot disagree about what the model was. Duals are normalised here, in one place:
`row_duals[r]` is ∂(objective)/∂(bound) of row r's active bound, in the maximisation sense,
whatever the backend's own convention.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

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


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do, declared up front so callers choose without trying."""

    duals: bool
    iis: bool
    max_variables: int | None = None
    max_constraints: int | None = None


@dataclass(frozen=True, slots=True)
class Availability:
    ok: bool
    reason: str = ""


@dataclass(frozen=True)
class MatrixLP:
    """`maximise c·x + offset` s.t. `row_lower ≤ A x ≤ row_upper`, `col_lower ≤ x ≤ col_upper`.

    `A` is a scipy CSC matrix. Infinite bounds are ±inf.
    """

    c: FloatArray
    offset: float
    A: object
    row_lower: FloatArray
    row_upper: FloatArray
    col_lower: FloatArray
    col_upper: FloatArray
    row_names: list[str] = field(default_factory=list)
    col_names: list[str] = field(default_factory=list)

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
    row_activity: FloatArray | None = None
    seconds: float = 0.0
    iis_rows: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class SolveOptions:
    time_limit: float | None = None
    method: str = "auto"  # auto | simplex | ipm
    verbose: bool = False


class SolverUnavailable(Exception):
    """The named solver cannot run here; the message says why and what to do instead."""


class Solver(Protocol):
    name: str
    capabilities: Capabilities

    def available(self) -> Availability:
        """Cheap check (an import, a licence probe); never builds a model."""
        ...

    def solve(self, lp: MatrixLP, options: SolveOptions) -> SolverResult: ...

    def infeasible_subset(self, lp: MatrixLP, candidate_rows: list[int]) -> tuple[int, ...] | None:
        """Rows among `candidate_rows` that cannot hold together, if the backend can say."""
        ...
