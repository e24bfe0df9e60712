"""Recognise an input file by its content and turn it into measurements.

`fit` accepts any file `import` accepts, so a user can point it straight at a Sarathi-Serve
CSV or a vLLM log; recognition looks only at the file the user named (its header columns or
its log lines), never at neighbouring files or at the file name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, get_args

from fluidgate.calibration.csvformat import (
    FORMAT_ID,
    REQUIRED_COLUMNS,
    MeasurementError,
    MeasurementSet,
    csv_header,
    merge,
    parse_csv,
)
from fluidgate.calibration.logs import looks_like_sglang, looks_like_vllm, parse_sglang, parse_vllm
from fluidgate.calibration.published import (
    SARATHI_CHUNKING_COLUMNS,
    SARATHI_COLUMNS,
    SPLITWISE_COLUMNS,
    Selection,
    load_json,
    looks_like_distserve,
    parse_distserve,
    parse_sarathi,
    parse_splitwise,
    refuse_sarathi_chunking,
)

Format = Literal["auto", "fluidgate", "vllm", "sglang", "sarathi", "splitwise", "distserve"]
FORMATS: tuple[str, ...] = get_args(Format)

FORMAT_HELP = {
    "fluidgate": "a measurement CSV written by `calibrate measure` or `calibrate import`",
    "vllm": "a vLLM log written with --enable-logging-iteration-details",
    "sglang": "an SGLang server log (its 'Decode batch' lines)",
    "sarathi": "Sarathi-Serve osdi_figure-2_{decode,prefill}.csv or osdi_table-2_results.csv",
    "splitwise": "Splitwise perf_model.csv (pick one --model/--hardware/--tp)",
    "distserve": "DistServe profiler JSON of fitted coefficients (pick one --model/--tp)",
}


def read_text(path: Path) -> str:
    """The file's text, bounded and regular files only (`fluidgate.reads`)."""
    from fluidgate.reads import InputKind, ReadError, read_text_input

    try:
        return read_text_input(path, InputKind.MEASUREMENTS)
    except ReadError as exc:
        raise MeasurementError(str(exc)) from None


def detect(text: str, name: str) -> Format:
    """The format of a file's content, or a `MeasurementError` that lists what is understood."""
    stripped = text.lstrip()
    if stripped.startswith(f"# {FORMAT_ID}"):
        return "fluidgate"
    if stripped.startswith("{"):
        raw = load_json(text, name)
        if looks_like_distserve(raw):
            return "distserve"
        raise MeasurementError(f"{name}: a JSON file, but not a DistServe profile")
    columns = set(csv_header(text))
    if columns >= REQUIRED_COLUMNS:
        return "fluidgate"
    if columns >= SARATHI_COLUMNS:
        return "sarathi"
    if columns >= SARATHI_CHUNKING_COLUMNS:
        raise refuse_sarathi_chunking(name)
    if columns >= SPLITWISE_COLUMNS:
        return "splitwise"
    if looks_like_vllm(text):
        return "vllm"
    if looks_like_sglang(text):
        return "sglang"
    shown = ", ".join(sorted(columns)[:8]) if columns else "no CSV header"
    raise MeasurementError(
        f"{name}: unrecognised input ({shown}); expected a measurement CSV, a vLLM iteration"
        " log, an SGLang log, or a Sarathi-Serve, Splitwise or DistServe file"
        " (see `fluidgate calibrate import --help`)"
    )


def load(path: Path, fmt: Format = "auto", select: Selection | None = None) -> MeasurementSet:
    """Measurements from one file, in the named format or the one its content shows."""
    text = read_text(path)
    name = str(path)
    if not text.strip():
        raise MeasurementError(f"{name}: the file is empty")
    kind = detect(text, name) if fmt == "auto" else fmt
    select = select or Selection()
    readers: dict[str, Callable[[], MeasurementSet]] = {
        "fluidgate": lambda: parse_csv(text, name),
        "vllm": lambda: parse_vllm(text, name),
        "sglang": lambda: parse_sglang(text, name),
        "sarathi": lambda: _sarathi(text, name),
        "splitwise": lambda: _splitwise(text, name, select),
        "distserve": lambda: parse_distserve(_distserve_json(text, name), name, select),
    }
    return readers[kind]()


def load_many(paths: Sequence[Path], select: Selection | None = None) -> MeasurementSet:
    sets = [load(path, "auto", select) for path in paths]
    return merge(sets, [str(p) for p in paths])


def _sarathi(text: str, name: str) -> MeasurementSet:
    columns = set(csv_header(text))
    if columns >= SARATHI_CHUNKING_COLUMNS:
        raise refuse_sarathi_chunking(name)
    if not columns >= SARATHI_COLUMNS:
        raise MeasurementError(
            f"{name}: not a Sarathi-Serve batch-timing CSV (needs columns"
            f" {', '.join(sorted(SARATHI_COLUMNS))})"
        )
    return parse_sarathi(text, name)


def _splitwise(text: str, name: str, select: Selection) -> MeasurementSet:
    if not set(csv_header(text)) >= SPLITWISE_COLUMNS:
        raise MeasurementError(
            f"{name}: not a Splitwise perf_model.csv (needs columns"
            f" {', '.join(sorted(SPLITWISE_COLUMNS))})"
        )
    return parse_splitwise(text, name, select)


def _distserve_json(text: str, name: str) -> dict[str, dict[str, object]]:
    raw = load_json(text, name)
    if not looks_like_distserve(raw):
        raise MeasurementError(f"{name}: not a DistServe profile JSON")
    return dict(raw)
