"""The published JSON Schemas: printed by the CLI, matched by real documents, and in the docs."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from fluidgate.cli import app
from fluidgate.document import solution_document
from fluidgate.document_schema import SolutionDocument
from fluidgate.pipeline import solve_policy
from fluidgate.schema_docs import regenerate
from fluidgate.schemas import SchemaName, json_schema
from fluidgate.sli_dsl.loader import load_policy, parse_policy
from tests.conftest import EXAMPLES, REFERENCE, ROOT, with_slo

runner = CliRunner()


@pytest.mark.parametrize("name", list(SchemaName))
def test_schema_command_prints_a_valid_schema(name: SchemaName) -> None:
    res = runner.invoke(app, ["schema", name.value])
    assert res.exit_code == 0
    printed = json.loads(res.output)
    assert printed == json_schema(name)
    version = "v2" if name is SchemaName.CONTROLLER else "v1"  # v2: classification rules
    assert printed["$id"] == f"fluidgate.{name.value}/{version}"
    jsonschema.Draft202012Validator.check_schema(printed)


def _documents() -> dict[str, dict[str, object]]:
    texts = {
        "optimal with soft SLOs": with_slo(REFERENCE, "soft wait(all) <= 0.1 s penalty 100",
                                           "tpot <= 22.3 ms"),
        "infeasible": with_slo(REFERENCE, "abandonment(all) <= 1 %"),
        "separate, decode backlog": REFERENCE.replace("pricing bundled", "pricing separate"),
    }
    docs = {k: solution_document(solve_policy(parse_policy(t).policy)) for k, t in texts.items()}
    for name in ("two_class_slo.sli", "dolly8.sli"):
        docs[name] = solution_document(solve_policy(load_policy(EXAMPLES / name).policy))
    return docs


def test_real_solution_documents_match_the_published_schema() -> None:
    validator = jsonschema.Draft202012Validator(json_schema(SchemaName.SOLUTION))
    docs = _documents()
    assert docs["infeasible"]["status"] == "infeasible" and "conflict" in docs["infeasible"]
    assert docs["separate, decode backlog"]["warnings"]
    for doc in docs.values():
        validator.validate(doc)
        SolutionDocument.model_validate_json(json.dumps(doc), strict=True)


def test_a_key_the_schema_does_not_know_is_named(tmp_path: Path) -> None:
    doc = _documents()["two_class_slo.sli"]
    doc["classes"]["decode_heavy"]["bogus"] = 1.0  # type: ignore[index]
    with pytest.raises(jsonschema.ValidationError, match="bogus"):
        jsonschema.Draft202012Validator(json_schema(SchemaName.SOLUTION)).validate(doc)
    path = tmp_path / "s.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    res = runner.invoke(app, ["schema", "solution", "--check", str(path)])
    assert res.exit_code == 2 and "classes.decode_heavy.bogus" in res.output
    del doc["classes"]["decode_heavy"]["bogus"]  # type: ignore[attr-defined]
    path.write_text(json.dumps(doc), encoding="utf-8")
    res = runner.invoke(app, ["schema", "solution", "--check", str(path)])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("path", sorted((ROOT / "fluidgate" / "calibration" / "data")
                                        .glob("*.calib.json")), ids=lambda p: p.name)
def test_shipped_calibration_files_match_the_published_schema(path: Path) -> None:
    validator = jsonschema.Draft202012Validator(json_schema(SchemaName.CALIBRATION))
    validator.validate(json.loads(path.read_text(encoding="utf-8")))
    res = runner.invoke(app, ["schema", "calibration", "--check", str(path)])
    assert res.exit_code == 0, res.output


def test_spec_reference_page_matches_the_schemas() -> None:
    """docs/spec.md's generated sections; rewrite them with
    `python -m fluidgate.schema_docs docs/spec.md` after changing a model."""
    page = (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")
    for name in SchemaName:
        assert f"BEGIN GENERATED: fluidgate schema {name.value} " in page
    assert regenerate(page) == page


def test_simulation_and_validation_reports_match_their_schemas(tmp_path: Path) -> None:
    """The simulator's documents are published and checked like the others (a bogus key and
    a wrong schema id are named, not passed)."""
    from fluidgate.cli import mount_simulator

    mount_simulator()
    sim = tmp_path / "run.json"
    spec = ROOT / "tests" / "fixtures" / "specs" / "reference.controller.json"
    res = runner.invoke(app, ["simulate", str(spec), "--gpus", "5",
                              "--duration", "30", "--warmup", "0", "--json", str(sim)])
    assert res.exit_code == 0, res.output
    (tmp_path / "study").mkdir()
    res = runner.invoke(app, ["validate", str(EXAMPLES / "two_class.sli"), "--quick", "--gpus",
                              "5", "--seeds", "2", "--workers", "1", "--out",
                              str(tmp_path / "study")])
    assert res.exit_code == 0, res.output
    for name, path in ((SchemaName.SIMULATION, sim),
                       (SchemaName.VALIDATION, tmp_path / "study" / "report.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        jsonschema.Draft202012Validator(json_schema(name)).validate(doc)
        res = runner.invoke(app, ["schema", name.value, "--check", str(path)])
        assert res.exit_code == 0 and f"valid fluidgate.{name.value}/v1" in res.output

        bad = tmp_path / f"{name.value}-bad.json"
        bad.write_text(json.dumps({**doc, "bogus": 1}), encoding="utf-8")
        res = runner.invoke(app, ["schema", name.value, "--check", str(bad)])
        assert res.exit_code == 2 and "bogus" in res.output, res.output
        bad.write_text(json.dumps({**doc, "schema": "fluidgate.solution/v1"}), encoding="utf-8")
        res = runner.invoke(app, ["schema", name.value, "--check", str(bad)])
        assert res.exit_code == 2 and f"expected 'fluidgate.{name.value}/v1'" in res.output
