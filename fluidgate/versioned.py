"""Versioned JSON documents: one reader and one schema publisher for every one of them.

Each document fluidgate writes (controller spec, solution, calibration, simulation,
validation) carries a `schema` id and is described by a pydantic model. Reading one is the
same four steps whatever the document, so they live here once: JSON that must be an object,
a `schema` id the reader accepts, strict validation, and every problem named by its field
path. Publishing the JSON Schema is likewise the model's schema plus `$id` and `$schema`,
so what `fluidgate schema` prints cannot drift from what the loader accepts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def published_schema(model: type[BaseModel], schema_id: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a document, generated from the model that loads it."""
    schema = model.model_json_schema(by_alias=True, mode="serialization")
    schema["$id"] = schema_id
    schema["$schema"] = JSON_SCHEMA_DIALECT
    return schema


def field_path(loc: Sequence[int | str]) -> str:
    """`classes[2].targets.prefill` from pydantic's location tuple."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def problems(exc: ValidationError) -> str:
    """Every validation error as `field.path: message`, joined by '; '."""
    return "; ".join(f"{field_path(tuple(e['loc']))}: {e['msg']}" for e in exc.errors())


def parse_document(text: str, model: type[M], accepted: Sequence[str], *, origin: str,
                   what: str, error: type[Exception]) -> M:
    """Validate a document's JSON text as `model`; every failure is an `error` in words.

    `accepted` lists the schema ids this reader takes, the current one first (older ones
    that the model still reads follow it). `what` names the document in messages
    ("controller spec").
    """
    try:
        raw = json.loads(text)
    except RecursionError:
        raise error(f"{origin}: nests too deeply to read") from None
    except ValueError as exc:
        raise error(f"{origin}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise error(f"{origin}: must hold a JSON object")
    found = raw.get("schema")
    if found not in accepted:
        older = "".join(f" (or '{old}', still read)" for old in accepted[1:])
        raise error(f"{origin}: schema is {repr(found)[:80]}; expected '{accepted[0]}'{older}")
    try:
        return model.model_validate_json(text, strict=True)
    except ValidationError as exc:
        raise error(f"{origin}: invalid {what}: {problems(exc)}") from None
