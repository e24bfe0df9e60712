"""The calibration file (`fluidgate.calibration/v1`) that a policy names with `iteration from`.

It is the contract between `fluidgate calibrate fit` and the policy checker: the checker reads
only `alpha`, `beta` and `gamma`; the rest is provenance and fit quality for the humans who
audit where the LP's constants came from.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SCHEMA_ID = "fluidgate.calibration/v1"


class CalibrationError(Exception):
    """A calibration file that cannot be used; the message is for the policy author."""


class CurveFit(BaseModel):
    """One fitted curve: its form, coefficients with confidence intervals, and its quality."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    form: str
    coefficients: dict[str, float]
    ci95: dict[str, tuple[float, float]] = Field(default_factory=dict)
    r2: float
    median_rel_error: float | None = None
    max_rel_error: float | None = None
    n_points: int | None = None
    r2_relative: float | None = Field(
        default=None, description="R² of the relative residuals, the quantity the fit minimises"
    )
    selection: str | None = Field(
        default=None, description="why this form was chosen over the alternatives"
    )
    formula: str | None = None
    excluded_points: list[dict[str, float]] = Field(
        default_factory=list, description="outliers left out of the fit, with their timings"
    )


class CalibrationFile(BaseModel):
    """What `fluidgate calibrate fit` writes; unknown keys survive so newer files still load."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, allow_inf_nan=False)

    schema_: Literal["fluidgate.calibration/v1"] = Field(alias="schema")
    alpha: float = Field(gt=0, description="mixed-iteration intercept, seconds")
    beta: float = Field(ge=0, description="mixed-iteration slope, seconds per chunk token")
    gamma: float = Field(gt=0, description="solo decode iterations per second, 1/τ_solo(B)")
    r2: dict[str, float] = Field(default_factory=dict, description="R² per fitted curve")
    curves: dict[str, CurveFit] = Field(default_factory=dict)
    provenance: dict[str, Any] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    max_batch: int | None = Field(default=None, description="B the constants were derived at")
    chunk_range: tuple[float, float] | None = Field(
        default=None, description="chunk sizes (tokens) over which α + β·C is the secant"
    )

    @field_validator("chunk_range")
    @classmethod
    def _ordered(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not 0 < value[0] <= value[1]:
            raise ValueError("must be [low, high] with 0 < low ≤ high")
        return value
    secant_max_rel_gap: float | None = Field(
        default=None, description="largest relative gap between α + β·C and τ_mix(C, B−1)"
    )
    derived_ci95: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="95% intervals of alpha, beta, gamma (delta method)"
    )


def dump_calibration(calib: CalibrationFile) -> str:
    """The JSON text of a calibration file, with the `schema` key spelled as the contract wants."""
    payload = calib.model_dump(mode="json", by_alias=True)
    return json.dumps(payload, indent=2, ensure_ascii=False) + "\n"


def save_calibration(
    path: Path | str, calib: CalibrationFile, *, inputs: Sequence[Path | str] = ()
) -> Path:
    """Write atomically (a policy that names this file must never see half of it), and never
    over one of the `inputs` the constants were fitted from."""
    from fluidgate.atomic import write_output

    write_output(path, dump_calibration(calib), inputs=inputs)
    return Path(path)


# No field needs more digits than a float holds; far longer integers cost quadratic time to
# convert, and Python refuses those past 4,300 digits with a bare ValueError.
MAX_INT_DIGITS = 400


class _LongInteger(Exception):
    def __init__(self, literal: str) -> None:
        self.literal = literal


def _bounded_int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INT_DIGITS:
        raise _LongInteger(literal)
    return int(literal)


def _line_column(text: str, offset: int) -> tuple[int, int]:
    offset = max(0, offset)
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


def load_calibration(path: Path | str) -> CalibrationFile:
    """Read and validate a calibration file; every failure is a `CalibrationError` in words."""
    from fluidgate.reads import InputKind, ReadError, read_text_input

    path = Path(path)
    try:
        text = read_text_input(path, InputKind.CALIBRATION)
    except ReadError as exc:
        raise CalibrationError(str(exc)) from None
    try:
        raw = json.loads(text, parse_int=_bounded_int)
    except RecursionError:
        raise CalibrationError(f"calibration file '{path}' nests too deeply to read") from None
    except _LongInteger as exc:
        line, column = _line_column(text, text.find(exc.literal))
        raise CalibrationError(
            f"calibration file '{path}' line {line}, column {column}: an integer of "
            f"{len(exc.literal.lstrip('-'))} digits is too long (at most {MAX_INT_DIGITS})"
        ) from None
    except json.JSONDecodeError as exc:
        raise CalibrationError(
            f"calibration file '{path}' is not valid JSON (line {exc.lineno}, column {exc.colno}:"
            f" {exc.msg})"
        ) from None
    if not isinstance(raw, dict):
        raise CalibrationError(f"calibration file '{path}' must hold a JSON object")
    found = raw.get("schema")
    if found != SCHEMA_ID:
        raise CalibrationError(
            f"calibration file '{path}' has schema {repr(found)[:80]}; expected '{SCHEMA_ID}'"
        )
    try:
        # strict: a calibration constant written as `true` or "0.001" is a broken file, not
        # something to coerce quietly
        return CalibrationFile.model_validate_json(text, strict=True)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise CalibrationError(f"calibration file '{path}' is malformed: {problems}") from None
