"""Sweeps: every point equals a fresh solve, shadow prices are the front's slopes, the
grammar points at mistakes, and Ray and local processes return the same points in order."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from fluidgate.parallel import LocalExecutor, RayExecutor
from fluidgate.pipeline import solve_policy
from fluidgate.planning.sweep import run_sweep
from fluidgate.planning.vary import Kind, SpecError, apply_vary, parse_vary
from fluidgate.sli_dsl.loader import load_policy, parse_policy
from tests.conftest import EXAMPLES

SLO_POLICY = EXAMPLES / "two_class_slo.sli"
# 20 points from where tpot first admits a plan to past where it stops binding (23.63 ms)
TPOT_20 = "tpot 22ms..23.9ms step 0.1ms"


@pytest.fixture(scope="module")
def policy():  # type: ignore[no-untyped-def]
    return load_policy(SLO_POLICY).policy


@pytest.fixture(scope="module")
def tpot_sweep(policy):  # type: ignore[no-untyped-def]
    v = parse_vary(TPOT_20, policy)
    return v, run_sweep(policy, [v])


def test_tpot_sweep_matches_fresh_solves(policy, tpot_sweep) -> None:  # type: ignore[no-untyped-def]
    v, result = tpot_sweep
    assert len(result.points) == 20
    assert [p.index for p in result.points] == list(range(20))
    for p, value in zip(result.points, v.values, strict=True):
        fresh = solve_policy(apply_vary(policy, v, value))
        assert fresh.optimal and p.optimal, (value, fresh.status, p.status)
        assert p.r_star == pytest.approx(fresh.objective, rel=1e-9, abs=0)
    assert sum(p.path == "warm" for p in result.points) == 20


def test_shadow_prices_are_the_fronts_slopes(tpot_sweep) -> None:  # type: ignore[no-untyped-def]
    """Where R*(tpot) is smooth around a point (no change of basis between its neighbours)
    the shadow price is the central difference of the sweep's own R*s; where tpot stops
    binding, R* is flat and the price is 0."""
    _, result = tpot_sweep
    h = 0.1  # ms: the shadow price is per display unit of the bound
    r = [p.r_star for p in result.points]
    shadows = [next(s.shadow_price for s in p.slos if s.name == "tpot <=")
               for p in result.points]
    smooth = 0
    for i in range(1, len(r) - 1):
        back, fwd = (r[i] - r[i - 1]) / h, (r[i + 1] - r[i]) / h
        assert shadows[i] >= 0.0
        if abs(fwd - back) <= 0.05 * max(abs(fwd), abs(back)) and back > 0:
            smooth += 1
            assert shadows[i] == pytest.approx((r[i + 1] - r[i - 1]) / (2 * h), rel=1e-3)
        elif back == fwd == 0.0:
            assert shadows[i] == 0.0
    assert smooth >= 12  # not vacuous: tpot binds on most of the range
    assert shadows[-1] == 0.0 and r[-1] == r[-2]  # past 23.63 ms tpot no longer binds


def test_rate_and_price_sweeps_match_fresh_solves() -> None:
    from bench.generate import generate, policy_text

    pol = parse_policy(policy_text(generate(8, seed=3, slos=True)) + "\n").policy
    for spec in ("rate x0.6..x1.4 step x0.2", f"rate({pol.classes[2].name}) x0.5, x2",
                 "price(output) x0.5..x1.5 step x0.5"):
        v = parse_vary(spec, pol)
        result = run_sweep(pol, [v])
        for p, value in zip(result.points, v.values, strict=True):
            fresh = solve_policy(apply_vary(pol, v, value))
            assert p.status == fresh.status.value
            if fresh.optimal:
                assert p.r_star == pytest.approx(fresh.objective, rel=1e-9, abs=1e-12)
                assert p.path == "warm"


def test_gpus_keep_cluster_traffic(policy) -> None:  # type: ignore[no-untyped-def]
    v = parse_vary("gpus 250, 1000", policy)
    half, double = (apply_vary(policy, v, x) for x in v.values)
    cls = policy.classes[0]
    assert half.classes[0].rate == pytest.approx(cls.rate * 2)  # 500 GPUs' traffic on 250
    assert double.classes[0].rate == pytest.approx(cls.rate / 2)
    result = run_sweep(policy, [v])
    assert [p.gpus for p in result.points] == [250, 1000]
    assert all(p.path == "fresh" for p in result.points)


def test_infeasible_points_carry_no_numbers(policy) -> None:  # type: ignore[no-untyped-def]
    result = run_sweep(policy, [parse_vary("tpot 20ms, 23ms", policy)])
    bad, good = result.points
    assert bad.status == "infeasible" and bad.r_star is None and bad.slos == ()
    assert good.optimal and good.r_star is not None


def test_varying_an_absent_slo_adds_it() -> None:
    pol = load_policy(EXAMPLES / "two_class.sli").policy
    v = parse_vary("ttft(decode_heavy) 1s, 2s", pol)
    varied = apply_vary(pol, v, 1.0)
    assert len(varied.slos) == 1 and varied.slos[0].op == "<="
    assert varied.slos[0].label == "ttft(decode_heavy) <= 1 s"


@pytest.mark.parametrize(("spec", "column", "words"), [
    ("tpot 18ms..40ms step 0ms", 22, "positive"),
    ("tpot 18ms..40ms", 16, "step"),
    ("tpot 18ms..40ms step 7ms", 22, "does not divide"),
    ("rate(chatty) x1, x2", 6, "no class"),
    ("rate x0.5..2 step x0.5", 12, "scale"),
    ("gpus 10.5, 20", 6, "whole number"),
    ("speed 1, 2", 1, "unknown target"),
    ("tpot 18ms, 20s", 12, "same unit"),
    ("tpot 18ms; 20ms", 10, "unexpected"),
])
def test_spec_errors_point_at_the_problem(policy, spec, column, words) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SpecError) as err:
        parse_vary(spec, policy)
    assert err.value.column == column, err.value.render()
    assert words in err.value.message


def test_spec_values(policy) -> None:  # type: ignore[no-untyped-def]
    v = parse_vary("tpot 18ms..20ms step 0.5ms", policy)
    assert v.kind is Kind.SLO and v.values == (0.018, 0.0185, 0.019, 0.0195, 0.02)
    assert parse_vary("abandonment(all) 5%, 10%", policy).values == (0.05, 0.1)
    assert parse_vary("price(input) x1, x2", policy).kind is Kind.PRICE
    assert parse_vary("gpus 400..600 step 50", policy).values == (400, 450, 500, 550, 600)


def test_local_processes_match_in_process(policy) -> None:  # type: ignore[no-untyped-def]
    v = parse_vary("tpot 22ms..23ms step 0.25ms", policy)
    alone = run_sweep(policy, [v], workers=2, executor=LocalExecutor(1))
    progress: list[tuple[int, int]] = []
    pooled = run_sweep(policy, [v], workers=2, executor=LocalExecutor(2),
                       progress=lambda done, total: progress.append((done, total)))
    assert pooled.points == alone.points
    # the bar moves per solved point, not per chunk of points (2 chunks here)
    assert progress == [(k, 5) for k in range(1, 6)]


def test_ray_matches_local_processes(policy) -> None:  # type: ignore[no-untyped-def]
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install ray")
    v = parse_vary(TPOT_20, policy)
    local = run_sweep(policy, [v], workers=2, executor=LocalExecutor(2))
    progress: list[int] = []
    try:
        on_ray = run_sweep(policy, [v], workers=2, executor=RayExecutor("local", 2),
                           progress=lambda done, _total: progress.append(done))
    finally:
        ray.shutdown()
    assert [p.index for p in on_ray.points] == list(range(20))
    assert on_ray.points == local.points
    assert progress == list(range(1, 21))


def test_cli_sweep_writes_points_in_order(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from typer.testing import CliRunner

    from fluidgate import cli

    cli.mount_planning()
    out = tmp_path / "s.json"
    res = CliRunner().invoke(cli.app, ["sweep", str(SLO_POLICY), "--vary", "tpot 21ms..24ms "
                                       "step 1ms", "--json", str(out), "--csv",
                                       str(tmp_path / "s.csv"), "-q"])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert [p["shown"]["tpot"] for p in doc["points"]] == ["21 ms", "22 ms", "23 ms", "24 ms"]
    assert doc["points"][0]["status"] == "infeasible" and doc["points"][0]["r_star"] is None
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert len(lines) == 5 and lines[1].startswith("21 ms,infeasible,,")
    bad = CliRunner().invoke(cli.app, ["sweep", str(SLO_POLICY), "--vary", "tpot 1ms..2ms"])
    assert bad.exit_code == 2 and "column 14" in bad.output
    none = CliRunner().invoke(cli.app, ["sweep", str(SLO_POLICY), "--vary", "tpot 18ms, 19ms"])
    assert none.exit_code == 3 and none.output.count("infeasible") == 2


@pytest.mark.parametrize("spec", ["tpot 20ms, 31ms", "rate x0.7, x1.3",
                                  "price(input) x0.5, x3", "abandonment(all) 10%, 35%"])
def test_patched_arrays_are_the_compiled_ones(spec) -> None:  # type: ignore[no-untyped-def]
    """What a warm point solves is exactly the LP a fresh build compiles (a widened
    pattern holds explicit zeros, so compare dense)."""
    import numpy as np

    from bench.generate import generate, policy_text
    from fluidgate.formulations.fluid_lp import build_fluid_lp
    from fluidgate.formulations.matrix import compile_matrix
    from fluidgate.formulations.slo import add_slos
    from fluidgate.planning.resolve import WarmFamily

    pol = parse_policy(policy_text(generate(6, seed=5, slos=True)) + "\n").policy
    v = parse_vary(spec, pol)
    first, second = (apply_vary(pol, v, x) for x in v.values)
    fam = WarmFamily(first)
    fam._build()
    patched = fam._patch(second)
    assert patched is not None
    lp = build_fluid_lp(second)
    add_slos(lp)
    fresh = compile_matrix(lp).matrix
    got = patched[0]

    def dense(m):  # type: ignore[no-untyped-def]
        out = np.zeros(m.A.shape)
        cols = np.repeat(np.arange(m.A.shape[1]), np.diff(m.A.indptr))
        out[m.A.indices, cols] = m.A.data
        return out

    assert fam.compiled.columns == compile_matrix(lp).columns
    np.testing.assert_array_equal(got.c, fresh.c)
    np.testing.assert_array_equal(got.row_lower, fresh.row_lower)
    np.testing.assert_array_equal(got.row_upper, fresh.row_upper)
    np.testing.assert_allclose(dense(got), dense(fresh), rtol=1e-15, atol=0)


@pytest.mark.parametrize("command", [["sweep", "--vary", "tpot 21ms, 22ms"], ["capacity"],
                                     ["validate", "--quick"]])
def test_cli_without_ray_refuses_in_words(command: list[str], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """--ray without the extra: exit 2 and the install hint, before any work, no traceback."""
    from typer.testing import CliRunner

    from fluidgate import cli

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    cli.mount_planning()
    cli.mount_simulator()
    out = tmp_path / "never.json"
    name, *rest = command
    json_opt = ["--out", str(tmp_path / "never")] if name == "validate" else ["--json", str(out)]
    res = CliRunner().invoke(cli.app, [name, str(SLO_POLICY), *rest, "--ray", "auto",
                                       *json_opt])
    assert res.exit_code == 2, res.output
    assert "Ray is not installed" in res.output and "Traceback" not in res.output
    assert list(tmp_path.iterdir()) == []
