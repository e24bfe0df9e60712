"""The JSON Schemas fluidgate publishes, one per document it writes or reads.

Each is generated from the pydantic model that loads or describes the document, so the schema
and the loader cannot disagree. `fluidgate schema NAME` prints them; the docs include them.
A document with a loader of its own (the controller spec, the calibration file) is checked
with that loader, which knows more than its schema; the others with `versioned`'s reader.
"""

from __future__ import annotations

import importlib
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from pydantic import BaseModel


class SchemaName(StrEnum):
    CONTROLLER = "controller"  # fluidgate.controller/v2: the spec the runtime reads
    SOLUTION = "solution"  # fluidgate.solution/v1: `fluidgate solve --json`
    CALIBRATION = "calibration"  # fluidgate.calibration/v1: `fluidgate calibrate fit`
    SIMULATION = "simulation"  # fluidgate.simulation/v1: `fluidgate simulate --json`
    VALIDATION = "validation"  # fluidgate.validation/v1: `fluidgate validate --out DIR`


class _Document(NamedTuple):
    module: str
    model: str
    schema_id: str  # the module's constant holding the id
    what: str
    kind: str  # the `reads.InputKind` that bounds reading it


_DOCUMENTS = {
    SchemaName.CONTROLLER: _Document("fluidgate.controllers.spec", "ControllerSpec",
                                     "SCHEMA_ID", "controller spec", "SPEC"),
    SchemaName.SOLUTION: _Document("fluidgate.document_schema", "SolutionDocument",
                                   "SCHEMA_ID", "solution document", "SOLUTION"),
    SchemaName.CALIBRATION: _Document("fluidgate.calibration.schema", "CalibrationFile",
                                      "SCHEMA_ID", "calibration file", "CALIBRATION"),
    SchemaName.SIMULATION: _Document("fluidgate.simulator.report", "SimulationReport",
                                     "SIMULATION_SCHEMA", "simulation report", "REPORT"),
    SchemaName.VALIDATION: _Document("fluidgate.simulator.report", "ValidationReport",
                                     "VALIDATION_SCHEMA", "validation report", "REPORT"),
}


def _model(name: SchemaName) -> tuple[type[BaseModel], str]:
    doc = _DOCUMENTS[name]
    module = importlib.import_module(doc.module)
    model: type[BaseModel] = getattr(module, doc.model)
    schema_id: str = getattr(module, doc.schema_id)
    return model, schema_id


def schema_id(name: SchemaName) -> str:
    return _model(name)[1]


def json_schema(name: SchemaName) -> dict[str, Any]:
    from fluidgate.versioned import published_schema

    return published_schema(*_model(name))


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
        from fluidgate.calibration.schema import SCHEMA_ID, CalibrationError, load_calibration

        try:
            load_calibration(path)
        except CalibrationError as exc:
            raise DocumentError(str(exc)) from None
        return f"{path}: valid {SCHEMA_ID}"
    return _check_with_model(name, path)


def _check_with_model(name: SchemaName, path: Path) -> str:
    from fluidgate.reads import InputKind, ReadError, read_text_input
    from fluidgate.versioned import parse_document

    model, sid = _model(name)
    try:
        text = read_text_input(path, InputKind[_DOCUMENTS[name].kind])
    except ReadError as exc:
        raise DocumentError(str(exc)) from None
    doc = parse_document(text, model, (sid,), origin=str(path), what=_DOCUMENTS[name].what,
                         error=DocumentError)
    classes = getattr(doc, "classes", None)
    if isinstance(classes, dict):
        status = getattr(doc, "status", "")
        return f"{path}: valid {sid} ({len(classes)} classes, {status})"
    return f"{path}: valid {sid}"
