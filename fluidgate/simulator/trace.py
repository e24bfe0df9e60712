"""Replayed traffic: a CSV of arrivals (time, class, prompt tokens, output tokens).

A trace is the operator's real traffic, so a bad row is never skipped or guessed at: the
first problems are reported with their line numbers and the run is refused. The file is read
with a size bound, since a trace is user input.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from fluidgate.simulator.config import SimulationInputError

COLUMNS = ("time", "class", "prompt", "output")
MAX_REPORTED = 5


@dataclass(frozen=True)
class Trace:
    """Arrivals sorted by time; classes as names until `check_classes` maps them."""

    origin: str
    times: NDArray[np.float64]
    class_names: tuple[str, ...]  # one per row
    prompts: NDArray[np.float64]
    outputs: NDArray[np.float64]
    classes: NDArray[np.int64]  # indices into the spec's classes (after check_classes)

    def check_classes(self, names: tuple[str, ...]) -> None:
        """Map class names to the spec's indices; a name the spec lacks is refused."""
        index = {name: i for i, name in enumerate(names)}
        for row, name in enumerate(self.class_names):
            if name not in index:
                raise SimulationInputError(
                    f"{self.origin}: row {row + 2}: class '{name}' is not in the spec "
                    f"(classes: {', '.join(names)})")
            self.classes[row] = index[name]


def _number(text: str, what: str, *, whole: bool) -> float:
    value = float(text)  # ValueError is turned into a row message by the caller
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number ≥ 0, not '{text}'")
    if whole and (not value.is_integer() or value < 1):
        raise ValueError(f"{what} must be a whole number of tokens ≥ 1, not '{text}'")
    return value


def load_trace(path: Path) -> Trace:
    """Read (bounded, regular files only) and parse a trace file."""
    from fluidgate.reads import InputKind, ReadError, read_text_input

    try:
        text = read_text_input(path, InputKind.TRACE)
    except ReadError as exc:
        raise SimulationInputError(str(exc)) from None
    return parse_trace(text, str(path))


def parse_trace(text: str, origin: str = "<trace>") -> Trace:
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or [h.strip().lower() for h in header] != list(COLUMNS):
        raise SimulationInputError(
            f"{origin}: row 1: the header must be {','.join(COLUMNS)}, not "
            f"{','.join(header or []) or '(empty)'}")
    times: list[float] = []
    names: list[str] = []
    prompts: list[float] = []
    outputs: list[float] = []
    problems: list[str] = []
    for line, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        try:
            if len(row) != len(COLUMNS):
                raise ValueError(f"{len(row)} fields, expected {len(COLUMNS)}")
            t = _number(row[0].strip(), "time", whole=False)
            name = row[1].strip()
            if not name:
                raise ValueError("class is empty")
            p = _number(row[2].strip(), "prompt", whole=True)
            d = _number(row[3].strip(), "output", whole=True)
            if times and t < times[-1]:
                raise ValueError(f"time {t:g} is earlier than the row before ({times[-1]:g}); "
                                 "rows must be in time order")
        except ValueError as exc:
            problems.append(f"row {line}: {exc}")
            if len(problems) >= MAX_REPORTED:
                break
            continue
        times.append(t)
        names.append(name)
        prompts.append(p)
        outputs.append(d)
    if problems:
        raise SimulationInputError(f"{origin}: bad rows:\n  " + "\n  ".join(problems))
    if not times:
        raise SimulationInputError(f"{origin}: no arrivals after the header")
    return Trace(origin, np.array(times), tuple(names), np.array(prompts), np.array(outputs),
                 np.zeros(len(times), np.int64))
