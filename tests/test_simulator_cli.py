"""`fluidgate simulate` and `fluidgate validate` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fluidgate.cli import app, mount_simulator
from fluidgate.controllers.spec import RouterRule, dump_spec
from tests.conftest import EXAMPLES
from tests.simulator_support import one_gpu_spec, reference_spec

RUN = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def _mounted() -> None:
    mount_simulator()


@pytest.fixture
def ref_spec(tmp_path: Path) -> Path:
    path = tmp_path / "ref.spec.json"
    path.write_text(dump_spec(reference_spec()), encoding="utf-8")
    return path


def test_simulate_prints_measured_and_predicted_and_writes_files(ref_spec: Path,
                                                                 tmp_path: Path) -> None:
    out, png = tmp_path / "run.json", tmp_path / "run.png"
    res = RUN.invoke(app, ["simulate", str(ref_spec), "--gpus", "20", "--duration", "300",
                           "--seed", "4", "--json", str(out), "--plot", str(png)])
    assert res.exit_code == 0, res.output
    assert "297.7162 planned" in res.output
    assert "decode_heavy" in res.output and "TTFT per request" in res.output
    doc = json.loads(out.read_text())
    assert doc["schema"] == "fluidgate.simulation/v1"
    run = doc["run"]
    assert (run["policy"], run["n"], run["seed"], run["mixed_gpus"]) == ("gate-and-route", 20,
                                                                         4, 5)
    # a 300 s window on 20 GPUs: revenue within a few percent of the plan, never above it
    assert 0.85 * 297.7162 < run["revenue_per_gpu"] < 297.7162
    assert png.read_bytes().startswith(PNG)


def test_simulate_refuses_a_broken_spec_naming_the_field(tmp_path: Path) -> None:
    doc = json.loads(dump_spec(reference_spec()))
    doc["cluster"]["max_batch"] = "sixteen"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    res = RUN.invoke(app, ["simulate", str(path)])
    assert res.exit_code == 2
    assert "cluster.max_batch" in res.output


def test_simulate_refuses_an_unrepresentable_spec(tmp_path: Path) -> None:
    path = tmp_path / "sli.json"
    path.write_text(dump_spec(one_gpu_spec(rate=1.0, patience=5.0, prompt=300, output=100,
                                           router=RouterRule.SLI_SPLIT, p_solo=0.5)))
    res = RUN.invoke(app, ["simulate", str(path), "--policy", "sli-router"])
    assert res.exit_code == 2
    assert "classes[0].p_solo" in res.output and "Traceback" not in res.output


def test_simulate_refuses_a_trace_with_bad_rows(ref_spec: Path, tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("time,class,prompt,output\n0.1,decode_heavy,300,1000\n"
                     "0.2,prefill_heavy,3000,-4\n")
    res = RUN.invoke(app, ["simulate", str(ref_spec), "--trace", str(trace)])
    assert res.exit_code == 2
    assert "row 3" in res.output and "output" in res.output


def test_simulate_replays_a_trace(ref_spec: Path, tmp_path: Path) -> None:
    rows = "".join(f"{0.01 * i:.2f},{'decode_heavy' if i % 2 else 'prefill_heavy'},300,1000\n"
                   for i in range(1, 400))
    trace = tmp_path / "t.csv"
    trace.write_text("time,class,prompt,output\n" + rows)
    out = tmp_path / "run.json"
    res = RUN.invoke(app, ["simulate", str(ref_spec), "--trace", str(trace), "--warmup", "0",
                           "--duration", "60", "--json", str(out)])
    assert res.exit_code == 0, res.output
    arrived = sum(c["arrivals"] for c in json.loads(out.read_text())["run"]["classes"])
    assert arrived * 60 == pytest.approx(399)


def test_validate_writes_the_report(tmp_path: Path) -> None:
    res = RUN.invoke(app, ["validate", str(EXAMPLES / "two_class.sli"), "--quick", "--gpus",
                           "5", "--seeds", "2", "--workers", "1", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["schema"] == "fluidgate.validation/v1"
    assert doc["r_star"] == pytest.approx(297.7162, abs=1e-4)
    policies = {(r["policy"], r["n"], r["seed"]) for r in doc["runs"]}
    names = ["gate-and-route", "FI-WSP", "GI-WSP", "GF-WSP", "FG-SP"]
    assert policies == {(p, 5, s) for p in names for s in (0, 1)}
    assert all(0 < r["revenue_per_gpu"] < doc["r_star"] for r in doc["runs"])
    for name in ("convergence.png", "occupancy.png", "baselines.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG)


def test_validate_on_two_workers_prints_what_one_prints() -> None:
    args = ["validate", str(EXAMPLES / "two_class.sli"), "--quick", "--gpus", "5,20",
            "--seeds", "1"]
    one = RUN.invoke(app, [*args, "-j", "1"])
    two = RUN.invoke(app, [*args, "--workers", "2"])
    assert one.exit_code == 0 and two.exit_code == 0, (one.output, two.output)
    assert "gate-and-route" in one.output and two.output == one.output


@pytest.mark.parametrize(("args", "message"), [
    (["--gpus", "5,x"], "'x' is not a whole number"),
    (["--gpus", "0"], "at least 1"),
    (["--seeds", "0"], "--seeds must be at least 1"),
])
def test_validate_refuses_bad_options(args: list[str], message: str) -> None:
    res = RUN.invoke(app, ["validate", str(EXAMPLES / "two_class.sli"), *args])
    assert res.exit_code == 2
    assert message in res.output


FIXTURES = Path(__file__).parent / "fixtures" / "docs"


def test_validate_of_an_infeasible_policy_exits_3_naming_the_conflict() -> None:
    """The policy path goes through the same solve-to-spec step as `export`: exit 3 with the
    conflicting lines, not a pointer to another command."""
    res = RUN.invoke(app, ["validate", str(FIXTURES / "two_conflicts.sli"), "--quick"])
    assert res.exit_code == 3
    assert "conflict" in res.output and "nearest feasible bound" in res.output


def test_validate_with_an_unknown_solver_exits_2() -> None:
    res = RUN.invoke(app, ["validate", str(EXAMPLES / "two_class.sli"), "--solver", "cplex"])
    assert res.exit_code == 2
    assert "unknown solver 'cplex'" in res.output


@pytest.mark.parametrize(("make", "words"), [
    (lambda d: d / "missing" / "study", "does not exist"),
    (lambda d: (d / "f").write_text("x") and d / "f", "is not a directory"),
    (lambda d: ((d / "busy").mkdir(), (d / "busy" / "mine.txt").write_text("keep"))
     and d / "busy", "--force"),
])
def test_validate_refuses_an_unwritable_out_before_simulating(
        tmp_path: Path, make: Any, words: str) -> None:
    out = make(tmp_path)
    res = RUN.invoke(app, ["validate", str(EXAMPLES / "two_class.sli"), "--quick", "--gpus",
                           "5", "--seeds", "1", "-j", "1", "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert words in res.output
    assert "R* =" not in res.output  # refused before the solve and the study
    if (tmp_path / "busy").exists():
        assert (tmp_path / "busy" / "mine.txt").read_text() == "keep"


def test_validate_force_replaces_a_study_directory_whole(tmp_path: Path) -> None:
    out = tmp_path / "study"
    out.mkdir()
    (out / "old.txt").write_text("old")
    res = RUN.invoke(app, ["validate", str(EXAMPLES / "two_class.sli"), "--quick", "--gpus",
                           "5", "--seeds", "1", "-j", "1", "--out", str(out), "--force"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == [
        "baselines.png", "convergence.png", "occupancy.png", "report.json"]


def test_simulate_refuses_to_write_over_its_input_before_simulating(ref_spec: Path) -> None:
    before = ref_spec.read_bytes()
    res = RUN.invoke(app, ["simulate", str(ref_spec), "--json", str(ref_spec)])
    assert res.exit_code == 2, res.output
    assert "measured" not in res.output and ref_spec.read_bytes() == before
