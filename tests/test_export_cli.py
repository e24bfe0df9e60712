"""`fluidgate export` as a user meets it: exit codes, stdout, and all-or-nothing directories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fluidgate.cli import app
from fluidgate.controllers.export import outdir
from fluidgate.controllers.spec import dump_spec
from tests.conftest import EXAMPLES, ROOT
from tests.export_specs import REFERENCE_SPEC, reference_raw, spec_of

RUN = CliRunner()


def export(*args: str) -> Any:
    return RUN.invoke(app, ["export", *args])


def write_raw(tmp_path: Path, raw: dict[str, Any] | str) -> Path:
    p = tmp_path / "spec.json"
    p.write_text(raw if isinstance(raw, str) else json.dumps(raw), encoding="utf-8")
    return p


def test_out_dir_holds_every_file(tmp_path: Path) -> None:
    (tmp_path / "deploy").mkdir()
    out = tmp_path / "deploy" / "vllm"
    res = export(str(REFERENCE_SPEC), "--target", "vllm", "--out", str(out))
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["README.txt", "mixed.args", "pools.json", "priorities.json", "solo.args"]
    assert f"wrote {out}/" in res.output and "cannot express" in res.output
    assert json.loads((out / "pools.json").read_text())["mixed"]["replicas"] == 107


def test_stdout_single_file_is_the_file_itself() -> None:
    res = export(str(REFERENCE_SPEC), "-t", "json")
    assert res.exit_code == 0, res.output
    assert res.stdout == dump_spec(spec_of(reference_raw()))


def test_stdout_several_files_have_headers() -> None:
    res = export(str(REFERENCE_SPEC), "-t", "sglang")
    assert res.exit_code == 0
    for name in ("mixed.args", "solo.args", "router.args", "priorities.json", "README.txt"):
        assert f"==> {name} <==" in res.stdout


def test_unknown_target_lists_the_targets() -> None:
    res = export(str(REFERENCE_SPEC), "--target", "triton")
    assert res.exit_code == 2
    assert "unknown target 'triton'" in res.output
    assert "vllm, sglang, dynamo, llm-d, json, yaml" in res.output


@pytest.mark.parametrize(("edit", "field"), [
    (lambda r: r.update(schema="fluidgate.controller/v3"), "schema"),
    (lambda r: r["cluster"].pop("mixed_gpus"), "cluster.mixed_gpus"),
    (lambda r: r["cluster"].update(solo_gpus=-1), "cluster.solo_gpus"),
    (lambda r: r["classes"][0].update(p_solo="NaN"), "classes[0].p_solo"),
])
def test_bad_spec_exits_2_naming_the_field(tmp_path: Path, edit: Any, field: str) -> None:
    raw = reference_raw()
    edit(raw)
    text = json.dumps(raw).replace('"NaN"', "NaN")
    res = export(str(write_raw(tmp_path, text)), "-t", "vllm", "-o", str(tmp_path / "o"))
    assert res.exit_code == 2, res.output
    assert field in res.output
    assert not (tmp_path / "o").exists()


def test_unreadable_spec_and_broken_policy_exit_2(tmp_path: Path) -> None:
    res = export(str(tmp_path / "missing.json"), "-t", "vllm")
    assert res.exit_code == 2 and "does not exist" in res.output
    sli = tmp_path / "p.sli"
    sli.write_text("policy \"x\"\n")
    res = export(str(sli), "-t", "vllm", "-o", str(tmp_path / "o"))
    assert res.exit_code == 2 and str(sli) in res.output
    assert not (tmp_path / "o").exists()


def test_a_policy_is_solved_then_exported_like_its_spec(tmp_path: Path) -> None:
    out = tmp_path / "o"
    res = export(str(EXAMPLES / "two_class.sli"), "-t", "sglang", "-o", str(out))
    assert res.exit_code == 0, res.output
    ref = tmp_path / "ref"
    assert export(str(REFERENCE_SPEC), "-t", "sglang", "-o", str(ref)).exit_code == 0
    for name in ("mixed.args", "solo.args", "router.args", "pools.json", "priorities.json"):
        assert (out / name).read_text() == (ref / name).read_text(), name


def test_an_infeasible_policy_exits_3_and_writes_nothing(tmp_path: Path) -> None:
    policy = ROOT / "tests" / "fixtures" / "docs" / "two_conflicts.sli"
    res = export(str(policy), "-t", "vllm", "-o", str(tmp_path / "o"))
    assert res.exit_code == 3, res.output
    assert "conflicting: abandonment(prefill_heavy)" in res.output
    assert list(tmp_path.iterdir()) == []


def test_fractional_chunk_exits_2(tmp_path: Path) -> None:
    raw = reference_raw()
    raw["cluster"]["chunk"] = 100.5
    res = export(str(write_raw(tmp_path, raw)), "-t", "sglang")
    assert res.exit_code == 2 and "cluster.chunk" in res.output


# --- never a partial directory ------------------------------------------------------------

def test_refuses_a_non_empty_directory_without_force(tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    res = export(str(REFERENCE_SPEC), "-t", "vllm", "-o", str(out))
    assert res.exit_code == 2 and "--force" in res.output
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    res = export(str(REFERENCE_SPEC), "-t", "vllm", "-o", str(out), "--force")
    assert res.exit_code == 0, res.output
    assert not (out / "mine.txt").exists() and (out / "mixed.args").exists()


def test_missing_parent_and_input_inside_are_refused(tmp_path: Path) -> None:
    res = export(str(REFERENCE_SPEC), "-t", "vllm", "-o", str(tmp_path / "no" / "o"))
    assert res.exit_code == 2 and "does not create directories" in res.output
    assert not (tmp_path / "no").exists()
    out = tmp_path / "o"
    out.mkdir()
    spec = out / "spec.json"
    spec.write_text(REFERENCE_SPEC.read_text())
    res = export(str(spec), "-t", "vllm", "-o", str(out), "--force")
    assert res.exit_code == 2 and "input of this run" in res.output
    assert spec.read_text() == REFERENCE_SPEC.read_text()


def test_empty_directory_is_used_and_a_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export(str(REFERENCE_SPEC), "-t", "yaml", "-o", str(empty)).exit_code == 0
    assert (empty / "controller.yaml").exists()
    plain = tmp_path / "plain"
    plain.write_text("x")
    res = export(str(REFERENCE_SPEC), "-t", "yaml", "-o", str(plain), "--force")
    assert res.exit_code == 2 and plain.read_text() == "x"


def _fail_on_third_file(monkeypatch: pytest.MonkeyPatch) -> None:
    real = outdir.write_output
    calls = {"n": 0}

    def flaky(path: Any, text: str) -> Path | None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real(path, text)

    monkeypatch.setattr(outdir, "write_output", flaky)


def test_failure_mid_write_leaves_no_directory(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _fail_on_third_file(monkeypatch)
    res = export(str(REFERENCE_SPEC), "-t", "vllm", "-o", str(tmp_path / "o"))
    assert res.exit_code == 2 and "No space left" in res.output
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temporary directory


def test_failure_mid_write_keeps_the_previous_export(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "o"
    assert export(str(REFERENCE_SPEC), "-t", "vllm", "-o", str(out)).exit_code == 0
    before = {p.name: p.read_text() for p in out.iterdir()}
    _fail_on_third_file(monkeypatch)
    res = export(str(REFERENCE_SPEC), "-t", "sglang", "-o", str(out), "--force")
    assert res.exit_code == 2
    assert {p.name: p.read_text() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["o"]


def test_failure_at_the_final_rename_restores_the_previous_export(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "o"
    assert export(str(REFERENCE_SPEC), "-t", "vllm", "-o", str(out)).exit_code == 0
    before = {p.name: p.read_text() for p in out.iterdir()}
    real = outdir.os.replace

    def refuse_tmp(src: Any, dst: Any) -> None:
        if str(src).endswith(".tmp") and Path(dst) == out:
            raise OSError(5, "Input/output error")
        real(src, dst)

    monkeypatch.setattr(outdir.os, "replace", refuse_tmp)
    res = export(str(REFERENCE_SPEC), "-t", "json", "-o", str(out), "--force")
    assert res.exit_code == 2
    assert {p.name: p.read_text() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["o"]
