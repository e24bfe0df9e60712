"""The JSON Schemas fluidgate publishes, one per document it writes or reads.

Each is generated from the pydantic model that loads or describes the document, so the schema
and the loader cannot disagree. `fluidgate schema NAME` prints them; the docs include them.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any


class SchemaName(StrEnum):
    CONTROLLER = "controller"  # fluidgate.controller/v2: the spec the runtime reads
    SOLUTION = "solution"  # fluidgate.solution/v1: `fluidgate solve --json`
    CALIBRATION = "calibration"  # fluidgate.calibration/v1: `fluidgate calibrate fit`


def json_schema(name: SchemaName) -> dict[str, Any]:
    if name is SchemaName.CONTROLLER:
        from fluidgate.controllers.spec import spec_json_schema

        return spec_json_schema()
    if name is SchemaName.SOLUTION:
        from fluidgate.document_schema import solution_json_schema

        return solution_json_schema()
    from fluidgate.calibration.schema import SCHEMA_ID, CalibrationFile

    schema = CalibrationFile.model_json_schema(by_alias=True, mode="serialization")
    schema["$id"] = SCHEMA_ID
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def schema_text(name: SchemaName) -> str:
    """The schema as printed and published: 2-space JSON, keys in the model's order."""
    import json

    return json.dumps(json_schema(name), indent=2, ensure_ascii=False) + "\n"


class DocumentError(Exception):
    """A document that does not match its schema; the message names the field."""


def check_document(name: SchemaName, path: Path) -> str:
    """Validate the file at `path` as a `name` document with the loader fluidgate itself uses;
    returns a one-line summary, raises `DocumentError` saying what is wrong."""
    if name is SchemaName.CONTROLLER:
        from fluidgate.controllers.spec import SCHEMA_ID, SpecError, load_spec

        try:
            spec = load_spec(path)
        except SpecError as exc:
            raise DocumentError(str(exc)) from None
        return (f"{path}: valid {SCHEMA_ID} ({len(spec.classes)} classes, "
                f"{spec.cluster.mixed_gpus} mixed + {spec.cluster.solo_gpus} solo GPUs)")
    if name is SchemaName.CALIBRATION:
        from fluidgate.calibration.schema import CalibrationError, load_calibration

        try:
            load_calibration(path)
        except CalibrationError as exc:
            raise DocumentError(str(exc)) from None
        return f"{path}: valid fluidgate.calibration/v1"
    return _check_solution(path)


def _check_solution(path: Path) -> str:
    import json

    from pydantic import ValidationError

    from fluidgate.controllers.spec import problems
    from fluidgate.document_schema import SCHEMA_ID as SOLUTION_ID
    from fluidgate.document_schema import SolutionDocument
    from fluidgate.reads import InputKind, ReadError, read_text_input

    try:
        text = read_text_input(path, InputKind.SOLUTION)
    except ReadError as exc:
        raise DocumentError(str(exc)) from None
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise DocumentError(f"{path}: not valid JSON ({exc})") from None
    found = raw.get("schema") if isinstance(raw, dict) else None
    if found != SOLUTION_ID:
        raise DocumentError(f"{path}: schema is {found!r}; expected '{SOLUTION_ID}'")
    try:
        doc = SolutionDocument.model_validate_json(text, strict=True)
    except ValidationError as exc:
        raise DocumentError(f"{path}: invalid solution document: {problems(exc)}") from None
    return f"{path}: valid fluidgate.solution/v1 ({len(doc.classes)} classes, {doc.status})"
