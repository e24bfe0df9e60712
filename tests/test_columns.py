"""LP columns by one typed index: the compiler's keys are the solver's columns."""

from __future__ import annotations

from fluidgate.formulations.columns import Column, Var, column_of
from fluidgate.formulations.fluid_lp import build_fluid_lp
from fluidgate.formulations.matrix import compile_matrix
from fluidgate.formulations.slo import add_slos
from fluidgate.sli_dsl.loader import parse_policy
from fluidgate.verify import Check, Failure
from tests.conftest import REFERENCE, with_slo


def _compiled(*lines: str):  # type: ignore[no-untyped-def]
    policy = parse_policy(with_slo(REFERENCE, *lines)).policy
    lp = build_fluid_lp(policy)
    add_slos(lp)
    return policy, lp, compile_matrix(lp)


def test_every_row_coefficient_is_a_solver_column() -> None:
    """The compiled SLO rows and the matrix agree on every coefficient, column by column."""
    _, lp, compiled = _compiled("tpot <= 25 ms", "spread(prefill) <= 0.01",
                                "wait(decode_heavy) <= 1 s")
    index = compiled.column_index()
    slo_rows = {ref.index: r for r, ref in enumerate(compiled.rows) if ref.component == "slo"}
    a = compiled.matrix.A
    for k, row in enumerate(lp.rows):
        r = slo_rows[k]
        dense = {j: 0.0 for j in range(a.shape[1])}
        for j in range(a.shape[1]):
            for p in range(a.indptr[j], a.indptr[j + 1]):
                if a.indices[p] == r:
                    dense[j] = a.data[p]
        for col, coef in row.coeffs.items():
            assert dense[index[col]] == coef
    assert Column(Var.HI_PREFILL) in index and Column(Var.X, 1) in index
    assert column_of("violation", 0) is None and column_of("x", 1) == ("x", 1)
    assert Column(Var.Y_S, 0).label(("a", "b")) == "y_s[a]" and Column(Var.LO_DECODE).label() \
        == "lo_decode"


def test_verification_failures_are_named_in_policy_terms() -> None:
    policy, _, compiled = _compiled("wait(decode_heavy) <= 1 s")
    slo_row = next(r for r, ref in enumerate(compiled.rows) if ref.component == "slo")
    x_col = compiled.column_index()[Column(Var.X, 1)]
    row = Failure(Check.ROW, "slo[0]", 1e-3, "does not hold", row=slo_row)
    col = Failure(Check.BOUND, "x[1]", 1e-3, "outside its bounds", column=x_col)
    assert "the SLO 'wait(decode_heavy) <= 1 s' on line" in compiled.describe(policy, row)
    assert "x of class 'prefill_heavy'" in compiled.describe(policy, col)
    plain = Failure(Check.GAP, "duality gap", 1e-3)
    assert compiled.describe(policy, plain) == plain.describe()
