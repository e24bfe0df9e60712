"""The calibration file (`fluidgate.calibration/v1`) that a policy names with `iteration from`.

It is the contract between `fluidgate calibrate fit` and the policy checker: the checker reads
only `alpha`, `beta` and `gamma`; the rest is provenance and fit quality for the humans who
audit where the LP's constants came from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCHEMA_ID = "fluidgate.calibration/v1"


class CalibrationError(Exception):
    """A calibration file that cannot be used; the message is for the policy author."""


class CurveFit(BaseModel):
    """One fitted curve: its form, coefficients with confidence intervals, and its quality."""

    model_config = ConfigDict(extra="allow")

    form: str
    coefficients: dict[str, float]
    ci95: dict[str, tuple[float, float]] = Field(default_factory=dict)
    r2: float
    median_rel_error: float | None = None
    max_rel_error: float | None = None
    n_points: int | None = None


class CalibrationFile(BaseModel):
    model_config = ConfigDict(extra="allow")

    schema_: Literal["fluidgate.calibration/v1"] = Field(alias="schema")
    alpha: float = Field(gt=0, description="mixed-iteration intercept, seconds")
    beta: float = Field(ge=0, description="mixed-iteration slope, seconds per chunk token")
    gamma: float = Field(gt=0, description="solo decode iterations per second, 1/τ_solo(B)")
    r2: dict[str, float] = Field(default_factory=dict, description="R² per fitted curve")
    curves: dict[str, CurveFit] = Field(default_factory=dict)
    provenance: dict[str, Any] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)


def load_calibration(path: Path) -> CalibrationFile:
    """Read and validate a calibration file; every failure is a `CalibrationError` in words."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CalibrationError(f"calibration file '{path}' does not exist") from None
    except OSError as exc:
        raise CalibrationError(f"cannot read calibration file '{path}': {exc.strerror}") from None
    try:
        raw = json.loads(text)
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
            f"calibration file '{path}' has schema {found!r}; expected '{SCHEMA_ID}'"
        )
    try:
        return CalibrationFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise CalibrationError(f"calibration file '{path}' is malformed: {problems}") from None
