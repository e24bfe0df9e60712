"""The array assembly of a policy with SLOs (`formulations/slo_arrays.py`) against Pyomo's.

`solve_policy` hands the solver `slo_lp`'s arrays; `build_fluid_lp` + `add_slos` +
`compile_matrix` stays the formulation `explain` prints and the reference here. The two
must be the same LP bit for bit: the same rows and columns in the same order, the same
coefficients, bounds and names, and the same row references, which the conflict diagnosis
and the SLO read-back (values, shadow prices) go by.
"""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

from fluidgate.diagnostics import PolicyError
from fluidgate.formulations.columns import Var
from fluidgate.formulations.fluid_lp import build_fluid_lp
from fluidgate.formulations.matrix import CompiledLP, compile_matrix
from fluidgate.formulations.slo import add_slos
from fluidgate.formulations.slo_arrays import slo_lp
from fluidgate.formulations.slo_compile import LinearRow
from fluidgate.model import Policy
from fluidgate.sli_dsl.loader import parse_policy
from tests.test_base_arrays import random_policy

N_POLICIES = 60

# every shape of docs/language.md's constraints; {a}, {b}: class names, {p}: a number
HARD_ONLY = [
    "tpot({a}) <= {ms} ms",
    "tpot <= {ms} ms",
    "ttft({a}) <= 2 * tpot({b}) + {s} s",
]
EITHER = [
    "ttft({a}) <= {s} s",
    "ttft(all) <= {s} s",
    "abandonment({a}) <= {pct} %",
    "abandonment(all) <= {pct} %",
    "wait({a}) <= {ms} ms",
    "wait(all) <= {s} s",
    "served({a}) >= {f} * rate({a})",
    "admitted({a}) >= {f} * rate({a})",
    "served({a}) == {f} * rate({a})",
    "served({a}) + served({b}) >= {f} * (rate({a}) + rate({b}))",
    "served({a}) - {f} * served({b}) <= 0 /s",
    "spread(prefill) <= {f} / 10",
    "spread(decode) <= {f}",
    "mixed_gpus <= {pct} %",
    "revenue >= {f} per s per gpu",
]
PENALTIES = ("0", "0.01", "3", "250")


def _slo(rng: random.Random, classes: int) -> str:
    soft = rng.random() < 0.4
    shape = rng.choice(EITHER if soft else EITHER + HARD_ONLY)
    text = shape.format(a=f"c{rng.randrange(classes)}", b=f"c{rng.randrange(classes)}",
                        ms=f"{rng.uniform(20, 3000):.4g}", s=f"{rng.uniform(0.2, 20):.4g}",
                        pct=f"{rng.uniform(1, 60):.3g}", f=f"{rng.uniform(0.05, 0.95):.3g}")
    return f"soft {text} penalty {rng.choice(PENALTIES)}" if soft else text


def random_slo_policy(seed: int) -> str:
    """`random_policy(seed)` with class weights and an `slo` block of 1 to 14 constraints."""
    rng = random.Random(1_000 + seed)
    text = random_policy(seed)
    classes = len(re.findall(r"^class ", text, flags=re.M))
    lines = []
    for line in text.splitlines():
        if line.startswith("class ") and rng.random() < 0.5:
            line = line[: -len(" }")] + f"; weight = {rng.choice(['0.5', '2', '3', '10'])} }}"
        lines.append(line)
    slos = "\n".join(f"  {_slo(rng, classes)}" for _ in range(rng.randint(1, 14)))
    return "\n".join(lines) + f"\nslo {{\n{slos}\n}}\n"


def _reference(policy: Policy) -> tuple[list[LinearRow], CompiledLP]:
    lp = build_fluid_lp(policy)
    rows = add_slos(lp)
    return list(rows), compile_matrix(lp)


def _same_bits(a: np.ndarray, b: np.ndarray, what: str) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert a.tobytes() == b.tobytes(), what  # to the bit, -0.0 and 0.0 apart


@pytest.mark.parametrize("seed", range(N_POLICIES))
def test_arrays_equal_pyomo_compile(seed: int) -> None:
    policy = parse_policy(random_slo_policy(seed)).policy
    try:
        rows, reference = _reference(policy)
    except PolicyError as exc:  # an SLO that cannot hold or is not linear: both refuse it
        with pytest.raises(PolicyError) as fast_exc:
            slo_lp(policy)
        assert str(fast_exc.value) == str(exc)
        return
    lp, fast = slo_lp(policy)
    assert lp.model is None
    assert lp.rows == rows
    assert fast.columns == reference.columns
    assert fast.rows == reference.rows
    assert [type(ref.index) for ref in fast.rows] == [type(ref.index) for ref in reference.rows]
    a, b = fast.matrix, reference.matrix
    assert a.row_names == b.row_names and a.col_names == b.col_names
    assert a.offset == b.offset
    for name in ("c", "row_lower", "row_upper", "col_lower", "col_upper"):
        _same_bits(getattr(a, name), getattr(b, name), name)
    assert a.A.shape == b.A.shape
    for name in ("indptr", "indices", "data"):
        _same_bits(getattr(a.A, name), getattr(b.A, name), name)
    for var, idx in reference.class_columns().items():
        np.testing.assert_array_equal(fast.class_columns()[var], idx, err_msg=var)
    assert dict(fast.scalar_columns()) == dict(reference.scalar_columns())


def _compiled(seed: int) -> tuple[str, Policy, list[LinearRow], CompiledLP | None]:
    text = random_slo_policy(seed)
    policy = parse_policy(text).policy
    try:
        rows, compiled = _reference(policy)
    except PolicyError:
        return text, policy, [], None
    return text, policy, rows, compiled


def test_policies_cover_every_shape() -> None:
    """The random policies compile mostly, and hold what changes the order or the rows:
    soft rows (with penalty 0, whose violation first appears in its row), soft equalities,
    both spread pools, hard equalities, rows that are dropped as trivial (an abandonment
    cap on a class without patience), and rows on queues fixed at 0."""
    compiled = [_compiled(s) for s in range(N_POLICIES)]
    ok = [(t, p, r, c) for t, p, r, c in compiled if c is not None]
    assert len(ok) >= 0.8 * N_POLICIES
    texts = "\n".join(t for t, _, _, _ in ok)
    for shape in EITHER + HARD_ONLY:
        head = re.escape(shape.split("{", 1)[0])
        assert re.search(rf"^  {head}", texts, flags=re.M), shape
        assert shape in HARD_ONLY or re.search(rf"^  soft {head}", texts, flags=re.M), shape
    assert re.search(r"penalty 0$", texts, flags=re.M)
    assert re.search(r"^  soft served\(c\d+\) == .* penalty [1-9]", texts, flags=re.M)
    assert re.search(r"^  served\(c\d+\) == ", texts, flags=re.M)
    assert "weight = " in texts
    names = {name for _, _, _, c in ok for name, _ in c.columns}
    assert {"violation", "violation_below", "hi_prefill", "lo_prefill", "hi_decode",
            "lo_decode"} <= names
    assert any(sum(ref.component == "slo" for ref in c.rows) < len(r)  # a trivial row
               for _, _, r, c in ok)
    assert any(col.var in (Var.Q_P, Var.Q_D) and p.classes[col.cls_index].theta == 0.0
               for _, p, r, _ in ok for row in r for col in row.coeffs
               if col.cls_index is not None)  # a term on a queue fixed at 0
