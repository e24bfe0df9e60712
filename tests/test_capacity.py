"""Capacity: the answer is checked by fresh solves on both sides of it, and against the
model's homogeneity (the per-GPU LP sees traffic over n, so twice the traffic needs twice
the GPUs, to within one)."""

from __future__ import annotations

import json

import pytest

from fluidgate.parallel import LocalExecutor
from fluidgate.pipeline import solve_policy
from fluidgate.planning.capacity import find_capacity
from fluidgate.planning.vary import scale_rates, with_gpus
from fluidgate.sli_dsl.loader import load_policy
from tests.conftest import EXAMPLES


@pytest.fixture(scope="module")
def policy():  # type: ignore[no-untyped-def]
    return load_policy(EXAMPLES / "two_class_slo.sli").policy


@pytest.fixture(scope="module")
def answer(policy):  # type: ignore[no-untyped-def]
    return find_capacity(policy, 1.0)


def test_fewest_gpus_is_feasible_and_one_fewer_is_not(policy, answer) -> None:  # type: ignore[no-untyped-def]
    n = answer.gpus
    assert n is not None and answer.monotone
    assert solve_policy(with_gpus(policy, n)).optimal
    below = solve_policy(with_gpus(policy, n - 1))
    assert below.status.value == "infeasible"
    assert answer.at.gpus == n and answer.below.gpus == n - 1
    # what decides it is what `solve` names as conflicting one GPU below
    assert below.conflict is not None
    assert set(answer.deciding) == {s.label for g in below.conflict.groups for s in g}
    assert "tpot <= 23 ms" in answer.deciding


def test_twice_the_traffic_needs_twice_the_gpus(policy, answer) -> None:  # type: ignore[no-untyped-def]
    doubled = find_capacity(policy, 2.0, executor=LocalExecutor(2))
    assert doubled.gpus in (2 * answer.gpus - 1, 2 * answer.gpus)
    # the same answer whether the traffic grows through --growth or the rates themselves
    assert find_capacity(scale_rates(policy, 2.0), 1.0).gpus == doubled.gpus


def test_floor_on_r_star(policy, answer) -> None:  # type: ignore[no-untyped-def]
    r = answer.at.r_star
    assert find_capacity(policy, 1.0, min_r_star=r * 0.99).meets_floor
    assert not find_capacity(policy, 1.0, min_r_star=r * 1.01).meets_floor


def test_no_slos_means_one_gpu() -> None:
    pol = load_policy(EXAMPLES / "two_class.sli").policy
    a = find_capacity(pol, 1.0)
    assert a.gpus == 1 and a.below is None


def test_cli_capacity(tmp_path, answer) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from fluidgate import cli

    cli.mount_planning()
    out = tmp_path / "cap.json"
    res = CliRunner().invoke(cli.app, ["capacity", str(EXAMPLES / "two_class_slo.sli"),
                                       "--json", str(out), "-j", "1"])
    assert res.exit_code == 0, res.output
    assert f"fewest GPUs: {answer.gpus:,}" in res.output
    doc = json.loads(out.read_text())
    assert doc["gpus"] == answer.gpus and doc["monotone"] is True
    res = CliRunner().invoke(cli.app, ["capacity", str(EXAMPLES / "two_class_slo.sli"),
                                       "--min-r-star", "1e9", "-j", "1"])
    assert res.exit_code == 3 and "not met" in res.output
    res = CliRunner().invoke(cli.app, ["capacity", str(EXAMPLES / "two_class_slo.sli"),
                                       "--growth", "-1"])
    assert res.exit_code == 2
