"""The controller spec built from a solve: DESIGN.md §4 on the reference, schema, round trip."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from fluidgate.cli import app
from fluidgate.controllers.build import build_spec, choose_router, priority_ranks
from fluidgate.controllers.spec import (
    GateRule,
    RouterRule,
    SpecError,
    dump_spec,
    load_spec,
    parse_spec,
)
from fluidgate.pipeline import solve_policy
from fluidgate.schemas import SchemaName, json_schema
from fluidgate.sli_dsl.loader import parse_policy
from tests.conftest import EXAMPLES, REFERENCE, with_slo

# DESIGN.md §2: the reference instance and its published optimum
TAU = 0.0174 + 6.2e-5 * 256
GAMMA = 1 / 0.022
B, N = 16, 500
P, D = (300.0, 3000.0), (1000.0, 400.0)
X_STAR = (0.018261, 0.194953)

runner = CliRunner()


def _spec(text: str = REFERENCE):  # type: ignore[no-untyped-def]
    sol = solve_policy(parse_policy(text).policy)
    return sol, build_spec(sol, "examples/two_class.sli")


def test_reference_plan_has_107_mixed_gpus() -> None:
    """M = ⌈n·Σx*⌉ = ⌈500 × 0.213214⌉ = ⌈106.6⌉ = 107 (DESIGN.md §4)."""
    _, spec = _spec()
    assert math.ceil(N * sum(X_STAR)) == 107
    assert (spec.cluster.gpus, spec.cluster.mixed_gpus, spec.cluster.solo_gpus) == (500, 107, 393)
    assert spec.cluster.mixed_share == pytest.approx(sum(X_STAR), abs=1e-6)
    assert spec.r_star == pytest.approx(297.7162, abs=5e-5)
    assert [c.targets.prefill for c in spec.classes] == pytest.approx(
        [N * x for x in X_STAR], abs=5e-4)


def test_reference_routing_probabilities_by_hand() -> None:
    """p_s,i = μ_s·y_s/(μ_m·y_m + μ_s·y_s) with μ_m = 1/(Dτ), μ_s = γ/D (DESIGN.md §4).

    The per-class split of decodes between pools is not unique here (μ_m/μ_s is the same for
    both classes, DESIGN.md §2), so each class is checked against the formula at the plan's own
    y*, and the split as a whole against what the published x* fixes: both pools are full, so
    the output tokens decoded on solo GPUs per second, Σ D_i·served_i·p_i = γ·Σ y_s, equal
    γ·B·(1 − Σx*) per GPU, and all output tokens Σ D_i·served_i = Σ D_i·μ_p,i·x_i*.
    """
    _, spec = _spec()
    solo_tokens = all_tokens = 0.0
    for c, d, p, x in zip(spec.classes, D, P, X_STAR, strict=True):
        mu_m, mu_s = 1 / (d * TAU), GAMMA / d
        ym, ys = c.targets.decodes_mixed / N, c.targets.decodes_solo / N
        assert c.p_solo == pytest.approx(mu_s * ys / (mu_m * ym + mu_s * ys), rel=1e-9)
        served = 256 / (p * TAU) * x  # μ_p·x*: q_d* = 0, every admitted request completes
        assert c.predicted.served / N == pytest.approx(served, rel=1e-4)
        solo_tokens += d * served * c.p_solo
        all_tokens += d * served
    assert solo_tokens == pytest.approx(GAMMA * B * (1 - sum(X_STAR)), rel=1e-4)
    assert all_tokens == pytest.approx(GAMMA * B * (1 - sum(X_STAR))
                                       + (B - 1) * sum(X_STAR) / TAU, rel=1e-4)


def test_gate_and_priority_order() -> None:
    """Separate: static priority, rank by D/P (decode_heavy 3.33 before prefill_heavy 0.133).
    Bundled: occupancy-deficit gate; rank by the optimum's wait — prefill_heavy is admitted
    without waiting (q_p* = 0), decode_heavy waits q_p*/λ = 0.31669/0.5 s and is throttled."""
    sol, spec = _spec()
    assert spec.gate is GateRule.OCCUPANCY_DEFICIT
    assert [(c.name, c.priority) for c in spec.classes] == [("decode_heavy", 2),
                                                            ("prefill_heavy", 1)]
    assert spec.classes[0].predicted.wait == pytest.approx(0.31669 / 0.5, abs=1e-4)
    sol, spec = _spec(REFERENCE.replace("pricing bundled", "pricing separate"))
    assert spec.gate is GateRule.STATIC_PRIORITY
    assert priority_ranks(sol) == [1, 2]


def test_router_is_sli_split_only_when_a_placement_slo_binds() -> None:
    # cluster tpot close to τ_solo = 22 ms: binds (mixed streams run at τ = 33.3 ms) and
    # depends on placement
    sol, spec = _spec(with_slo(REFERENCE, "tpot <= 22.3 ms"))
    assert [o.binding for o in sol.slos] == [True]
    assert spec.router is RouterRule.SLI_SPLIT and "tpot <= 22.3 ms" in spec.router_reason
    # binds, but only counts completions: solo-first keeps the plan
    sol, spec = _spec(with_slo(REFERENCE, "abandonment(decode_heavy) <= 5 %"))
    assert [o.binding for o in sol.slos] == [True]
    assert spec.router is RouterRule.SOLO_FIRST
    # a placement metric that does not bind changes nothing either
    sol, _ = _spec(with_slo(REFERENCE, "tpot <= 40 ms"))
    assert choose_router(sol)[0] is RouterRule.SOLO_FIRST


def test_spec_validates_against_the_published_schema_and_round_trips(tmp_path: Path) -> None:
    _, spec = _spec(with_slo(REFERENCE, "tpot <= 22.3 ms",
                             "soft wait(all) <= 0.1 s penalty 100"))
    text = dump_spec(spec)
    jsonschema.Draft202012Validator(json_schema(SchemaName.CONTROLLER)).validate(json.loads(text))
    assert dump_spec(parse_spec(text)) == text
    path = tmp_path / "c.json"
    path.write_text(text, encoding="utf-8")
    assert dump_spec(load_spec(path)) == text


def _mutated(change: str) -> str:
    _, spec = _spec()
    doc = json.loads(dump_spec(spec))
    if change == "version":
        doc["schema"] = "fluidgate.controller/v3"
    elif change == "missing":
        del doc["classes"][1]["p_solo"]
    elif change == "negative":
        doc["cluster"]["mixed_gpus"] = -3
    return json.dumps(doc)


@pytest.mark.parametrize(("change", "field"), [
    ("version", "fluidgate.controller/v2"), ("missing", "classes[1].p_solo"),
    ("negative", "cluster.mixed_gpus"),
])
def test_bad_specs_are_rejected_naming_the_field(change: str, field: str,
                                                 tmp_path: Path) -> None:
    text = _mutated(change)
    with pytest.raises(SpecError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_spec(text)
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    res = runner.invoke(app, ["schema", "controller", "--check", str(path)])
    assert res.exit_code == 2 and field in res.output
    with pytest.raises(jsonschema.ValidationError):  # the published schema agrees
        jsonschema.Draft202012Validator(json_schema(SchemaName.CONTROLLER)).validate(json.loads(text))


def test_nan_is_rejected_naming_the_field() -> None:
    text = re.sub(r'"r_star": [^,]+', '"r_star": NaN', _mutated("none"), count=1)
    assert '"r_star": NaN' in text
    with pytest.raises(SpecError, match="r_star"):
        parse_spec(text)


def test_only_an_optimal_plan_becomes_a_spec(tmp_path: Path) -> None:
    sol = solve_policy(parse_policy(with_slo(REFERENCE, "abandonment(all) <= 1 %")).policy)
    with pytest.raises(SpecError, match="only an optimal plan"):
        build_spec(sol, "x.sli")
    out = tmp_path / "c.json"
    policy = tmp_path / "p.sli"
    policy.write_text(with_slo(REFERENCE, "abandonment(all) <= 1 %"), encoding="utf-8")
    res = runner.invoke(app, ["solve", str(policy), "--controller", str(out), "-q"])
    assert res.exit_code == 3 and not out.exists()


def test_solve_writes_the_spec_and_refuses_to_overwrite_the_policy(tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    policy = EXAMPLES / "two_class.sli"
    res = runner.invoke(app, ["solve", str(policy), "--controller", str(out), "-q"])
    assert res.exit_code == 0, res.output
    spec = load_spec(out)
    assert spec.policy.path == str(policy) and spec.cluster.mixed_gpus == 107
    before = policy.read_bytes()
    res = runner.invoke(app, ["solve", str(policy), "--controller", str(policy), "-q"])
    assert res.exit_code == 2 and "it is an input of this run" in res.output
    assert policy.read_bytes() == before
