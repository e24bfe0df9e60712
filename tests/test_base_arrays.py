"""The numpy assembly of the base LP (`formulations/base_arrays.py`) against Pyomo's.

`fluidgate solve` hands HiGHS the numpy arrays for a policy without SLOs; Pyomo's model
stays the formulation `explain` prints. The two must be the same LP bit for bit (same rows
and columns in the same order, same coefficients, bounds and names), or the fast path
would solve a different problem, or the same one along a different simplex path.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from fluidgate.formulations.base_arrays import base_lp
from fluidgate.formulations.fluid_lp import build_fluid_lp
from fluidgate.formulations.matrix import compile_matrix
from fluidgate.model import service_rates
from fluidgate.sli_dsl.loader import parse_policy

OBJECTIVES = ("revenue", "served", "throughput")


def _price(rng: random.Random) -> str:
    return rng.choice(["0 per token", f"{rng.uniform(0.01, 2):.4g} per Mtok",
                       f"{rng.uniform(0.1, 1):.3g} per token",
                       f"{rng.uniform(1, 50):.3g} per request"])


def random_policy(seed: int) -> str:
    rng = random.Random(seed)
    mode = rng.choice(["bundled", "separate"])
    lines = [
        f'policy "random {seed}"',
        "cluster {",
        f"  gpus = {rng.randint(1, 1000)}",
        f"  max_batch = {rng.randint(1, 64)}",
        f"  chunk = {rng.choice([128, 256, 512])} tokens",
        f"  iteration {{ mixed = {rng.uniform(5, 30):.4g} ms + {rng.uniform(0.01, 0.1):.3g}"
        f" ms/token * chunk; solo = {rng.uniform(5, 40):.4g} ms }}",
        "}",
        f"pricing {mode} {{ input = {_price(rng)}; output = {_price(rng)} }}",
    ]
    for k in range(rng.randint(1, 40)):
        patience = "none" if rng.random() < 0.2 else f"{rng.uniform(0.5, 200):.4g} s"
        price = (f"; price {{ input = {_price(rng)}; output = {_price(rng)} }}"
                 if rng.random() < 0.3 else "")
        lines.append(
            f"class c{k} {{ rate = {rng.uniform(0.0, 2.0):.5g} /s per gpu; "
            f"prompt = {rng.randint(1, 8000)} tokens; output = {rng.randint(1, 2000)} tokens; "
            f"patience = {patience}{price} }}")
    lines.append(f"objective maximize {rng.choice(OBJECTIVES)}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", range(40))
def test_numpy_arrays_equal_pyomo_compile(seed: int) -> None:
    policy = parse_policy(random_policy(seed)).policy
    reference = compile_matrix(build_fluid_lp(policy))
    lp, fast = base_lp(policy)
    assert lp.model is None
    assert lp.rates == [service_rates(policy.cluster, c) for c in policy.classes]
    assert fast.columns == reference.columns
    assert fast.rows == reference.rows
    a, b = fast.matrix, reference.matrix
    assert a.row_names == b.row_names and a.col_names == b.col_names
    assert a.offset == b.offset
    for name in ("c", "row_lower", "row_upper", "col_lower", "col_upper"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.A.shape == b.A.shape
    for name in ("indptr", "indices", "data"):
        np.testing.assert_array_equal(getattr(a.A, name), getattr(b.A, name), err_msg=name)


def test_policies_cover_what_changes_the_order() -> None:
    """The random policies include classes without patience (no queue columns), each
    objective, and zero prices (terms missing from the objective)."""
    texts = [random_policy(s) for s in range(40)]
    assert sum("patience = none" in t for t in texts) >= 10
    for objective in OBJECTIVES:
        assert sum(t.endswith(f"maximize {objective}\n") for t in texts) >= 5
    assert sum("= 0 per token" in t for t in texts) >= 5


def test_refuses_a_policy_with_slos() -> None:
    text = random_policy(1).replace("objective", "slo { tpot(c0) <= 40 ms }\nobjective")
    with pytest.raises(ValueError, match="without SLOs"):
        base_lp(parse_policy(text).policy)
