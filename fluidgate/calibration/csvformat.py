"""The measurement CSV (`fluidgate.measurements/v1`): one row per batch shape, one timing each.

Every source (our own `measure`, serving-stack logs, published tables) is turned into this one
form so that the fit has a single input to understand. Provenance travels with the numbers as
`# key: value` comment lines above the header, because a calibration that cannot say which GPU,
which library versions and which model produced it cannot be audited later.

Columns:

    kind        solo (decode-only) | mixed (one prefill chunk + decodes) | prefill (chunk only);
                optional, since it follows from batch_size and chunk
    batch_size  decode streams b in the iteration
    chunk       prefill tokens C in the iteration (0 for solo)
    context     tokens already cached per decode stream (empty when the source does not say)
    prefix      tokens already cached for the prefilling request (empty when unknown)
    prefills    prefill requests whose tokens make up the chunk (0 for solo)
    time_s      iteration time, seconds (the median when repeated)
    p10_s/p90_s spread of repeated timings (empty for single observations)
    repeats     how many timings the row summarises
    source      where the row came from, free text
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, get_args

from fluidgate.atomic import write_text_atomic

FORMAT_ID = "fluidgate.measurements/v1"

Kind = Literal["solo", "mixed", "prefill"]
KINDS: tuple[str, ...] = get_args(Kind)

COLUMNS: tuple[str, ...] = (
    "kind",
    "batch_size",
    "chunk",
    "context",
    "prefix",
    "prefills",
    "time_s",
    "p10_s",
    "p90_s",
    "repeats",
    "source",
)
# `kind` may be left out of a hand-written file: it follows from batch_size and chunk.
REQUIRED_COLUMNS: frozenset[str] = frozenset({"batch_size", "chunk", "time_s"})


class MeasurementError(Exception):
    """Input that cannot become measurements; the message names the file and the fix."""


@dataclass(frozen=True, slots=True)
class Measurement:
    """One iteration shape and how long it took."""

    kind: Kind
    batch_size: int
    chunk: int
    time_s: float
    context: int | None = None
    prefix: int | None = None
    prefills: int = 0
    p10_s: float | None = None
    p90_s: float | None = None
    repeats: int = 1
    source: str = ""


@dataclass(frozen=True)
class MeasurementSet:
    """Rows plus the provenance (`metadata`) and caveats (`notes`) that belong with them."""

    rows: tuple[Measurement, ...]
    metadata: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def with_notes(self, *notes: str) -> MeasurementSet:
        return replace(self, notes=(*self.notes, *notes))


def classify(batch_size: int, chunk: int) -> Kind:
    """The kind follows from the shape, so importers cannot disagree about it."""
    if chunk <= 0:
        return "solo"
    return "prefill" if batch_size == 0 else "mixed"


def render_csv(data: MeasurementSet) -> str:
    """CSV text with the provenance as comment lines above the header."""
    out = io.StringIO()
    out.write(f"# {FORMAT_ID}\n")
    for key, value in data.metadata.items():
        out.write(f"# {_clean(key)}: {_clean(str(value))}\n")
    for note in data.notes:
        out.write(f"# note: {_clean(note)}\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in data.rows:
        writer.writerow(
            [
                row.kind,
                row.batch_size,
                row.chunk,
                _opt(row.context),
                _opt(row.prefix),
                row.prefills,
                repr(float(row.time_s)),
                _opt(row.p10_s),
                _opt(row.p90_s),
                row.repeats,
                row.source,
            ]
        )
    return out.getvalue()


def write_csv(path: Path, data: MeasurementSet) -> Path:
    """Atomic, so an interrupted sweep never leaves a truncated file that would fit silently."""
    return write_text_atomic(path, render_csv(data))


def split_comments(text: str) -> tuple[list[str], str]:
    """Leading `#` lines (without the `# `) and the CSV body that follows them."""
    lines = text.splitlines(keepends=True)
    comments: list[str] = []
    index = 0
    while index < len(lines) and (lines[index].startswith("#") or not lines[index].strip()):
        if lines[index].startswith("#"):
            comments.append(lines[index][1:].strip())
        index += 1
    return comments, "".join(lines[index:])


def csv_header(text: str) -> list[str]:
    """Column names of a CSV text (after any comment lines), stripped; [] when there is none."""
    _, body = split_comments(text)
    first = body.splitlines()[0] if body.strip() else ""
    return [name.strip() for name in next(csv.reader([first]), [])]


def parse_csv(text: str, name: str) -> MeasurementSet:
    """Read our own CSV back; `name` is the file name used in error messages."""
    comments, body = split_comments(text)
    metadata: dict[str, str] = {}
    notes: list[str] = []
    for line in comments:
        if line == FORMAT_ID:
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        if key.strip() == "note":
            notes.append(value.strip())
        else:
            metadata[key.strip()] = value.strip()
    reader = csv.DictReader(io.StringIO(body))
    columns = {c.strip() for c in reader.fieldnames or []}
    missing = REQUIRED_COLUMNS - columns
    if missing:
        raise MeasurementError(
            f"{name}: not a measurement CSV, missing column(s) {', '.join(sorted(missing))}"
        )
    rows = [_row(raw, name, line) for line, raw in enumerate(reader, start=2 + len(comments))]
    if not rows:
        raise MeasurementError(f"{name}: the file holds no measurements")
    return MeasurementSet(tuple(rows), metadata, tuple(notes))


def read_csv(path: Path) -> MeasurementSet:
    from fluidgate.reads import InputKind, ReadError, read_text_input

    try:
        text = read_text_input(path, InputKind.MEASUREMENTS)
    except ReadError as exc:
        raise MeasurementError(str(exc)) from None
    return parse_csv(text, str(path))


def merge(sets: Sequence[MeasurementSet], names: Sequence[str]) -> MeasurementSet:
    """One set from several files; metadata is kept per file so no provenance is lost."""
    if len(sets) == 1:
        return sets[0]
    rows = tuple(row for s in sets for row in s.rows)
    metadata = {
        f"{name}:{key}": value
        for s, name in zip(sets, names, strict=True)
        for key, value in s.metadata.items()
    }
    notes = tuple(dict.fromkeys(note for s in sets for note in s.notes))
    return MeasurementSet(rows, metadata, notes)


def model_json(config: Mapping[str, object]) -> str:
    """Compact JSON for a metadata line (one line, so it survives the comment syntax)."""
    return json.dumps(dict(config), separators=(",", ":"), sort_keys=True)


def _row(raw: Mapping[str, str | None], name: str, line: int) -> Measurement:
    where = f"{name}, line {line}"
    get = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
    batch = _int(get, "batch_size", where)
    chunk = _int(get, "chunk", where)
    if batch is None or chunk is None or batch < 0 or chunk < 0:
        raise MeasurementError(f"{where}: batch_size and chunk must be non-negative integers")
    expected = classify(batch, chunk)
    kind = get.get("kind") or expected
    if kind not in KINDS:
        raise MeasurementError(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if expected != kind:
        raise MeasurementError(
            f"{where}: kind {kind!r} does not match batch_size={batch}, chunk={chunk}"
            f" (that shape is {expected!r})"
        )
    prefills = _int(get, "prefills", where)
    time_s = _float(get, "time_s", where)
    if time_s is None or not time_s > 0:
        raise MeasurementError(f"{where}: time_s must be a positive number of seconds")
    return Measurement(
        kind=expected,
        batch_size=batch,
        chunk=chunk,
        time_s=time_s,
        context=_int(get, "context", where),
        prefix=_int(get, "prefix", where),
        prefills=(0 if expected == "solo" else 1) if prefills is None else prefills,
        p10_s=_float(get, "p10_s", where),
        p90_s=_float(get, "p90_s", where),
        repeats=_int(get, "repeats", where) or 1,
        source=get.get("source", ""),
    )


def _int(get: Mapping[str, str], key: str, where: str) -> int | None:
    value = _float(get, key, where)
    if value is None:
        return None
    if value != int(value):
        raise MeasurementError(f"{where}: {key} must be a whole number, got {get[key]!r}")
    return int(value)


def _float(get: Mapping[str, str], key: str, where: str) -> float | None:
    text = get.get(key, "")
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise MeasurementError(f"{where}: {key} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise MeasurementError(f"{where}: {key} must be finite, got {text!r}")
    return value


def _opt(value: float | int | None) -> str:
    if value is None:
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)


def _clean(text: str) -> str:
    return " ".join(text.split())


def summarise(times: Iterable[float]) -> tuple[float, float, float, int]:
    """Median, p10, p90 and count: the median resists the odd slow iteration (GC, clocks)."""
    import numpy as np

    values = np.asarray(list(times), dtype=float)
    if values.size == 0:
        raise ValueError("no timings to summarise")
    p10, median, p90 = np.percentile(values, [10, 50, 90])
    return float(median), float(p10), float(p90), int(values.size)
