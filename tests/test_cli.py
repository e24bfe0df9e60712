"""The command line as a user meets it: exit codes, tables, the JSON document, explain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fluidgate.cli import app
from tests.conftest import EXAMPLES, REFERENCE, with_slo

RUN = CliRunner()


def write(tmp_path: Path, text: str, name: str = "policy.sli") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_solve_prints_plan_and_r_star() -> None:
    res = RUN.invoke(app, ["solve", str(EXAMPLES / "two_class.sli")])
    assert res.exit_code == 0, res.output
    assert "297.7162" in res.output
    # ⌈500 · (0.018261 + 0.194953)⌉ = ⌈106.6⌉ = 107 mixed GPUs
    assert "107 mixed + 393 solo of 500 GPUs" in res.output
    assert "decode_heavy" in res.output and "6.33%" in res.output


def test_solve_json_document(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    out = tmp_path / "sub" / "solution.json"
    res = RUN.invoke(app, ["solve", str(EXAMPLES / "two_class.sli"), "--json", str(out), "-q"])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["schema"] == "fluidgate.solution/v1"
    assert doc["status"] == "optimal"
    assert doc["objective"] == pytest.approx(297.7162, abs=5e-5)
    assert doc["cluster"]["mixed_gpus"] == 107 and doc["cluster"]["gpus"] == 500
    dh = doc["classes"]["decode_heavy"]
    assert set(dh) >= {"x", "y_m", "y_s", "q_p", "q_d"}
    assert dh["x"] == pytest.approx(0.018261, abs=5e-7)
    assert dh["q_p"] == pytest.approx(0.31669, abs=5e-6)
    # operator quantities are consistent with the LP values: admitted = n·μ_p·x
    mu_p = 256 / (300 * (0.0174 + 6.2e-5 * 256))
    assert dh["admitted"] == pytest.approx(500 * mu_p * dh["x"], rel=1e-12)
    assert dh["abandonment"] == pytest.approx(0.1 * dh["q_p"] / 0.5, rel=1e-12)
    assert not list(tmp_path.glob("sub/.solution.json.*")), "temporary file left behind"


def test_solve_json_to_stdout() -> None:
    res = RUN.invoke(app, ["solve", str(EXAMPLES / "two_class.sli"), "--json", "-"])
    assert res.exit_code == 0
    assert json.loads(res.output)["schema"] == "fluidgate.solution/v1"


def test_infeasible_exits_3_and_names_exactly_the_conflicting_lines(tmp_path: Path) -> None:
    lines = ["abandonment(prefill_heavy) <= 5 %", "ttft(decode_heavy) <= 2 s",
             "spread(prefill) <= 0.05", "tpot <= 30 ms"]
    text = with_slo(REFERENCE, *lines)
    path = write(tmp_path, text)
    res = RUN.invoke(app, ["solve", str(path)])
    assert res.exit_code == 3, res.output
    first = text.splitlines().index("    " + lines[0]) + 1
    assert f"{path}:{first}:5: error: conflicting: {lines[0]}" in res.output
    assert f"{path}:{first + 2}:5: error: conflicting: {lines[2]}" in res.output
    assert lines[1] not in res.output and lines[3] not in res.output
    for dropped in (lines[0], lines[2]):  # removing either conflicting line is enough
        kept = [ln for ln in lines if ln != dropped]
        ok = RUN.invoke(app, ["solve", str(write(tmp_path, with_slo(REFERENCE, *kept))), "-q"])
        assert ok.exit_code == 0, ok.output


def test_traffic_beyond_capacity_without_patience(tmp_path: Path) -> None:
    text = REFERENCE.replace("patience = 10 s", "patience = none").replace(
        "rate     = 0.5 /s per gpu", "rate = 5 /s per gpu")
    res = RUN.invoke(app, ["solve", str(write(tmp_path, text))])
    assert res.exit_code == 3
    assert "classes without patience ('decode_heavy', 'prefill_heavy')" in res.output


def test_unknown_solver_is_an_input_error() -> None:
    res = RUN.invoke(app, ["solve", str(EXAMPLES / "two_class.sli"), "--solver", "cplex"])
    assert res.exit_code == 2 and "'cplex' is not one of 'highs', 'gurobi'" in res.output


def test_unavailable_solver_exits_4_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    from fluidgate.solvers.base import Availability
    from fluidgate.solvers.gurobi import GurobiSolver

    monkeypatch.setattr(GurobiSolver, "available",
                        lambda self: Availability(False, "no usable Gurobi licence"))
    res = RUN.invoke(app, ["solve", str(EXAMPLES / "two_class.sli"), "--solver", "gurobi"])
    assert res.exit_code == 4
    assert "solver 'gurobi' is not available: no usable Gurobi licence" in res.output


def test_solution_file_gets_normal_permissions(tmp_path: Path) -> None:
    """Atomic writing goes through mkstemp (mode 0600); the result must get the mode a plain
    open() would give under the same umask, whatever that umask is."""
    out = tmp_path / "s.json"
    RUN.invoke(app, ["solve", str(EXAMPLES / "two_class.sli"), "--json", str(out), "-q"])
    plain = tmp_path / "plain"
    plain.write_text("")
    assert out.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_non_revenue_objective_still_reports_real_revenue(tmp_path: Path) -> None:
    text = REFERENCE.replace("objective maximize revenue", "objective maximize served")
    out = tmp_path / "s.json"
    res = RUN.invoke(app, ["solve", str(write(tmp_path, text)), "--json", str(out), "-q"])
    assert res.exit_code == 0
    doc = json.loads(out.read_text())
    # served = Σ completions per GPU; revenue = Σ w_i · completions_i, w = (230, 380)
    served = {k: v["served"] / 500 for k, v in doc["classes"].items()}
    assert doc["objective"] == pytest.approx(sum(served.values()), rel=1e-9)
    assert doc["revenue_rate"] == pytest.approx(
        230 * served["decode_heavy"] + 380 * served["prefill_heavy"], rel=1e-9)


def test_labels_come_from_the_constraint_not_the_line(tmp_path: Path) -> None:
    text = REFERENCE + "\nslo { served(decode_heavy) >= 10 /s; ttft(all) <= 2 s  # both\n}\n"
    out = tmp_path / "s.json"
    RUN.invoke(app, ["solve", str(write(tmp_path, text)), "--json", str(out), "-q"])
    labels = [s["label"] for s in json.loads(out.read_text())["slos"]]
    assert labels == ["served(decode_heavy) >= 10 /s", "ttft(decode_heavy) <= 2 s",
                      "ttft(prefill_heavy) <= 2 s"]


def test_bad_method_is_an_input_error() -> None:
    res = RUN.invoke(app, ["solve", str(EXAMPLES / "two_class.sli"), "--method", "magic"])
    assert res.exit_code == 2


def test_explain_shows_the_multiplied_out_tpot_row(tmp_path: Path) -> None:
    path = write(tmp_path, with_slo(REFERENCE, "tpot(decode_heavy) <= 25 ms"))
    res = RUN.invoke(app, ["explain", str(path)])
    assert res.exit_code == 0, res.output
    # (1 − 0.025/τ)·y_m + (1 − 0.025γ)·y_s ≤ 0 with τ = 0.033272, γ = 1/0.022
    assert "0.248617⋅y_m[decode_heavy]" in res.output
    assert "0.136364⋅y_s[decode_heavy]" in res.output
    assert "≤ 0" in res.output


def test_check_reports_nonlinear_slo(tmp_path: Path) -> None:
    nonlinear = "served(decode_heavy) * wait(decode_heavy) <= 1 /s * 1 s"
    path = write(tmp_path, with_slo(REFERENCE, nonlinear))
    res = RUN.invoke(app, ["check", str(path)])
    assert res.exit_code == 2
    assert "not linear in the plan" in res.output


def test_version_and_help() -> None:
    assert RUN.invoke(app, ["--version"]).output.startswith("fluidgate ")
    res = RUN.invoke(app, ["solve", "--help"])
    assert res.exit_code == 0 and "R*" in res.output


@pytest.mark.parametrize(("target", "words"), [
    ("", "the output path is empty"),
    ("{dir}", "it is a directory"),
    ("{file}/x.json", "is not a directory"),
])
def test_unwritable_json_path_is_an_input_error(tmp_path: Path, target: str, words: str) -> None:
    (tmp_path / "f").write_text("x")
    out = target.format(dir=tmp_path, file=tmp_path / "f")
    res = RUN.invoke(app, ["solve", str(EXAMPLES / "two_class.sli"), "--json", out, "-q"])
    assert res.exit_code == 2, res.output
    assert words in res.output


def test_paths_with_brackets_are_printed_verbatim(tmp_path: Path) -> None:
    path = tmp_path / "a[x].sli"
    path.write_text(REFERENCE)
    res = RUN.invoke(app, ["check", str(path)])
    assert res.exit_code == 0 and f"{path}: ok" in res.output
    res = RUN.invoke(app, ["check", str(tmp_path / "[/y].sli")])
    assert res.exit_code == 2 and "[/y].sli' does not exist" in res.output


@pytest.mark.parametrize("limit", ["-5", "nan", "0"])
def test_bad_time_limit_is_an_input_error(limit: str) -> None:
    res = RUN.invoke(app, ["solve", str(EXAMPLES / "two_class.sli"), "--time-limit", limit])
    assert res.exit_code == 2 and "--time-limit must be a positive number" in res.output


def test_abandonment_cap_on_a_class_without_patience_holds_trivially(tmp_path: Path) -> None:
    """θ = 0: nobody abandons, so the row has no variables; it must not crash the model."""
    text = REFERENCE.replace("    patience = 10 s\n}\n\nclass prefill_heavy",
                             "    patience = none\n}\n\nclass prefill_heavy", 1)
    path = write(tmp_path, with_slo(text, "abandonment(all) <= 50 %"))
    out = tmp_path / "s.json"
    res = RUN.invoke(app, ["solve", str(path), "--json", str(out), "-q"])
    assert res.exit_code == 0, res.output
    slos = json.loads(out.read_text())["slos"]
    assert slos[0]["label"] == "abandonment(decode_heavy) <= 50 %"
    assert slos[0]["value"] == 0.0 and slos[0]["shadow_price"] == 0.0


def test_deeply_nested_constraint_is_a_positioned_error(tmp_path: Path) -> None:
    deep = "*".join(["served(decode_heavy)"] * 3000) + " >= 1 /s"
    path = write(tmp_path, with_slo(REFERENCE, deep))
    res = RUN.invoke(app, ["check", str(path)])
    assert res.exit_code == 2
    assert "nests 3000 levels deep" in res.output and f"{path}:" in res.output


def test_explain_soft_equality_and_trivial_rows(tmp_path: Path) -> None:
    text = REFERENCE.replace("patience = 10 s", "patience = none")
    path = write(tmp_path, with_slo(text, "abandonment(all) <= 5 %",
                                    "soft ttft(decode_heavy) == 1 s penalty 3"))
    res = RUN.invoke(app, ["explain", str(path)])
    assert res.exit_code == 0, res.output
    assert res.output.count("holds whatever the plan") == 2  # θ = 0: nobody abandons
    # q_p/λ + Pτ/C = 1 with λ = 0.5: 2·q_p = 1 − 300·τ/256, missed in either direction
    assert "2.0⋅q_p[decode_heavy] - violation[line 39] + violation_below[line 39]" in res.output
    assert "= 0.961009" in res.output


def test_entry_point_mounts_sub_apps_only_when_asked() -> None:
    """main() skips the sub-apps for its own commands (cold start) but never hides them."""
    import subprocess
    import sys

    def run(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "fluidgate", *args], capture_output=True,
                              text=True, timeout=120, env={**__import__("os").environ,
                                                          "COLUMNS": "200"})
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    listed = run("--help")
    for name in ("solve", "calibrate", "simulate", "validate", "harness", "sweep", "capacity"):
        assert f" {name} " in listed, name
    assert "fluidgate sweep [OPTIONS]" in run("sweep", "--help")
    code = ("import sys, fluidgate.cli as c; sys.argv = ['fluidgate', 'check', sys.argv[1]]\n"
            "try:\n    c.main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith(('fluidgate.harness', "
            "'fluidgate.simulator', 'fluidgate.planning', 'fluidgate.calibration'))))")
    proc = subprocess.run([sys.executable, "-c", code, str(EXAMPLES / "two_class.sli")],
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip().endswith("[]"), proc.stdout + proc.stderr
