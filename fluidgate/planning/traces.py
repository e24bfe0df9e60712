"""Request traces → arrays of arrival times and token counts.

Three formats are read, each detected by its first line: the Azure LLM inference trace
(2023; `TIMESTAMP,ContextTokens,GeneratedTokens`, wall-clock timestamps), the Mooncake
FAST'25 traces (JSON lines with `timestamp` in ms, `input_length`, `output_length`), and a
plain CSV `arrival,prompt,output[,patience]` (seconds and tokens). Traces are large, so the
read is bounded by its own limit (`InputKind.TRACE`), columns become numpy arrays in one
pass, and a bad value is an error naming its line, never a skipped request.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import numpy.typing as npt

from fluidgate.reads import InputKind, ReadError, read_text_input

Floats = npt.NDArray[np.float64]
Progress = Callable[[int, int], None]  # (lines done, lines in all)
_CHUNK = 100_000  # lines between progress reports


class TraceFormat(StrEnum):
    AUTO = "auto"
    AZURE = "azure"
    MOONCAKE = "mooncake"
    PLAIN = "plain"


FORMAT_WORDS = {
    TraceFormat.AZURE: "Azure LLM inference trace (TIMESTAMP,ContextTokens,GeneratedTokens)",
    TraceFormat.MOONCAKE: "Mooncake JSON lines (timestamp ms, input_length, output_length)",
    TraceFormat.PLAIN: "plain CSV (arrival s, prompt, output[, patience s])",
}
_AZURE = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_PLAIN = ("arrival", "prompt", "output")


class TraceError(Exception):
    """A trace that cannot be read; `str()` is the whole message for the user."""


@dataclass(frozen=True)
class Trace:
    """One request per index: arrival (s from the first request), prompt and output tokens,
    and patience (s) when the trace gives it."""

    file: str
    format: TraceFormat
    arrival: Floats
    prompt: Floats
    output: Floats
    patience: Floats | None

    @property
    def requests(self) -> int:
        return int(self.arrival.size)

    @property
    def span(self) -> float:
        """Seconds from the first arrival to the last: rates are requests over this span."""
        return float(self.arrival.max() - self.arrival.min())


def detect(first_line: str) -> TraceFormat | None:
    stripped = first_line.strip()
    if stripped.startswith("{"):
        return TraceFormat.MOONCAKE
    cells = [c.strip() for c in stripped.split(",")]
    if tuple(cells[:3]) == _AZURE:
        return TraceFormat.AZURE
    if tuple(cells[:3]) == _PLAIN:
        return TraceFormat.PLAIN
    return None


def read_trace(path: Path, fmt: TraceFormat = TraceFormat.AUTO,
               progress: Progress | None = None) -> Trace:
    try:
        text = read_text_input(path, InputKind.TRACE)
    except ReadError as exc:
        raise TraceError(str(exc)) from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise TraceError(f"trace '{path}' is empty")
    found = detect(lines[0])
    if fmt is TraceFormat.AUTO:
        if found is None:
            raise TraceError(
                f"cannot tell the format of trace '{path}' from its first line "
                f"{lines[0][:80]!r}; expected one of: " + "; ".join(FORMAT_WORDS.values()))
        fmt = found
    elif found is not fmt and not (fmt is TraceFormat.PLAIN and found is None):
        raise TraceError(f"trace '{path}' does not start like the {FORMAT_WORDS[fmt]}: "
                         f"{lines[0][:80]!r}")
    report = progress or (lambda done, total: None)
    columns: tuple[Floats, Floats, Floats, Floats | None]
    if fmt is TraceFormat.MOONCAKE:
        columns = _mooncake(path, lines, report)
    else:
        columns = _csv(path, lines, fmt, report)
    arrival, prompt, output, patience = columns
    if arrival.size < 2:
        raise TraceError(f"trace '{path}' holds {arrival.size} request(s); rates need at "
                         "least two arrivals")
    for name, values in (("prompt", prompt), ("output", output)):
        bad = np.flatnonzero(~(values >= 0))
        if bad.size:
            raise TraceError(f"trace '{path}': request {bad[0] + 1} has {name} tokens "
                             f"{values[bad[0]]:g}; token counts must be non-negative")
    if not (arrival.max() > arrival.min()):
        raise TraceError(f"trace '{path}': every request arrives at the same instant, so it "
                         "gives no arrival rate")
    return Trace(str(path), fmt, arrival - arrival.min(), prompt, output, patience)


def _csv(path: Path, lines: list[str], fmt: TraceFormat, report: Progress,
         ) -> tuple[Floats, Floats, Floats, Floats | None]:
    header = [c.strip() for c in lines[0].split(",")]
    if fmt is TraceFormat.PLAIN and tuple(header[:3]) != _PLAIN:
        raise TraceError(f"trace '{path}': a plain trace starts with the heading "
                         f"'arrival,prompt,output' (optionally ',patience'), not {lines[0]!r}")
    has_patience = fmt is TraceFormat.PLAIN and "patience" in header
    width = len(header)
    stamps: list[str] = []
    cols: list[list[str]] = [[], [], []]
    body = lines[1:]
    for start in range(0, len(body), _CHUNK):
        for offset, row in enumerate(csv.reader(body[start:start + _CHUNK])):
            if len(row) != width:
                raise TraceError(f"{path}:{start + offset + 2}: {len(row)} cells where the "
                                 f"heading has {width}")
            stamps.append(row[0])
            cols[0].append(row[1])
            cols[1].append(row[2])
            if has_patience:
                cols[2].append(row[header.index("patience")])
        report(min(start + _CHUNK, len(body)), len(body))
    prompt = _floats(path, cols[0], "prompt")
    output = _floats(path, cols[1], "output")
    patience = _floats(path, cols[2], "patience") if has_patience else None
    if fmt is TraceFormat.AZURE:
        try:
            times = np.array(stamps, dtype="datetime64[ns]")
        except ValueError:
            bad = next(i for i, s in enumerate(stamps) if not _is_time(s))
            raise TraceError(f"{path}:{bad + 2}: {stamps[bad]!r} is not a timestamp like "
                             "'2023-11-16 18:15:46.6805900'") from None
        arrival = (times - times.min()).astype(np.float64) / 1e9
    else:
        arrival = _floats(path, stamps, "arrival")
    return arrival, prompt, output, patience


def _is_time(text: str) -> bool:
    try:
        np.datetime64(text, "ns")
    except ValueError:
        return False
    return True


def _floats(path: Path, cells: list[str], what: str) -> Floats:
    try:
        values = np.asarray(cells, dtype=np.float64)
    except ValueError:  # find the cell numpy could not read
        values = np.array([_float_or_nan(c) for c in cells])
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        raise TraceError(f"{path}:{i + 2}: {what} {cells[i]!r} is not a finite number")
    return values


def _float_or_nan(cell: str) -> float:
    try:
        return float(cell)
    except ValueError:
        return float("nan")


def _mooncake(path: Path, lines: list[str], report: Progress,
              ) -> tuple[Floats, Floats, Floats, None]:
    n = len(lines)
    arrival, prompt, output = np.empty(n), np.empty(n), np.empty(n)
    for i, line in enumerate(lines):
        try:
            item = json.loads(line)
            arrival[i] = float(item["timestamp"]) / 1000.0
            prompt[i] = float(item["input_length"])
            output[i] = float(item["output_length"])
        except (ValueError, KeyError, TypeError) as exc:
            reason = f"no key {exc}" if isinstance(exc, KeyError) else "not a JSON object " \
                "with numbers for timestamp, input_length and output_length"
            raise TraceError(f"{path}:{i + 1}: {reason}") from None
        if i % _CHUNK == 0:
            report(i, n)
    report(n, n)
    for what, values in (("timestamp", arrival), ("input_length", prompt),
                         ("output_length", output)):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise TraceError(f"{path}:{bad[0] + 1}: {what} is not a finite number")
    return arrival, prompt, output, None
