"""Shared fixtures: the reference instance of DESIGN.md §2 and policy builders."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SHARED = ROOT.parent / "shared"

REFERENCE = (EXAMPLES / "two_class.sli").read_text(encoding="utf-8")


def with_slo(text: str, *lines: str) -> str:
    """The policy with an slo block holding `lines` appended."""
    return text + "\nslo {\n" + "\n".join(f"    {line}" for line in lines) + "\n}\n"


def solvers_available() -> list[str]:
    from fluidgate.solvers.base import SolverUnavailable
    from fluidgate.solvers.registry import SOLVER_NAMES, get_solver

    out = []
    for name in SOLVER_NAMES:
        try:
            get_solver(name)
        except SolverUnavailable:
            continue
        out.append(name)
    return out


def solver_params() -> list[object]:
    """highs always; gurobi where importable and licensed, else a skip with the reason."""
    params: list[object] = ["highs"]
    try:
        from fluidgate.solvers.base import SolverUnavailable
        from fluidgate.solvers.registry import get_solver

        get_solver("gurobi")
        params.append("gurobi")
    except SolverUnavailable as exc:
        params.append(pytest.param("gurobi", marks=pytest.mark.skip(reason=str(exc))))
    return params


@pytest.fixture
def reference_text() -> str:
    return REFERENCE
