"""Published measurements (Sarathi-Serve, Splitwise, DistServe) in the measurement-CSV form.

Calibrating against someone else's published hardware is how a user without a GPU at hand
gets defensible constants; each reader recognises its file by its columns and converts units
explicitly (never by guessing from magnitudes), so a seconds/milliseconds mix-up cannot slip
into the LP.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fluidgate.calibration.csvformat import (
    Measurement,
    MeasurementError,
    MeasurementSet,
    classify,
    split_comments,
    summarise,
)

SARATHI_COLUMNS = frozenset(
    {"batch_num_prefill_tokens", "batch_num_decode_tokens", "batch_execution_time"}
)
SARATHI_CHUNKING_COLUMNS = frozenset({"prefill_length", "chunk_size", "prefill_execution_time"})
SPLITWISE_COLUMNS = frozenset(
    {
        "model",
        "hardware",
        "prompt_size",
        "batch_size",
        "token_size",
        "prompt_time",
        "token_time",
        "tensor_parallel",
    }
)


@dataclass(frozen=True)
class Selection:
    """Which slice of a multi-model file to import, and the context DistServe's model needs."""

    model: str | None = None
    hardware: str | None = None
    tp: int | None = None
    context: int = 1024


def dict_rows(text: str) -> list[dict[str, str]]:
    _, body = split_comments(text)
    reader = csv.DictReader(io.StringIO(body))
    return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]


def parse_sarathi(text: str, name: str) -> MeasurementSet:
    """Figure-2 (decode-only, prefill-only) and Table-2 (mixed) batch timings.

    The figure-2 files give seconds and the table-2 file milliseconds; the unit is read off the
    file's own per-token column (`time / tokens`, in ms), which both files carry.
    """
    rows_in = dict_rows(text)
    if not rows_in:
        raise MeasurementError(f"{name}: the file holds no rows")
    per_token_key = next(
        (k for k in ("operation_time_per_token", "per_token_time") if k in rows_in[0]), None
    )
    if per_token_key is None:
        raise MeasurementError(
            f"{name}: Sarathi-Serve file without a per-token time column; cannot tell seconds"
            " from milliseconds"
        )
    rows: list[Measurement] = []
    scales: set[float] = set()
    for line, raw in enumerate(rows_in, start=2):
        try:
            prefill = int(float(raw["batch_num_prefill_tokens"]))
            decode = int(float(raw["batch_num_decode_tokens"]))
            value = float(raw["batch_execution_time"])
            per_token = float(raw[per_token_key])
            requests = int(float(raw.get("batch_size") or (decode + (prefill > 0))))
        except (KeyError, ValueError):
            raise MeasurementError(f"{name}, line {line}: unreadable Sarathi-Serve row") from None
        tokens = prefill + decode
        scale = _sarathi_scale(value, per_token, tokens, f"{name}, line {line}")
        scales.add(scale)
        rows.append(
            Measurement(
                kind=classify(decode, prefill),
                batch_size=decode,
                chunk=prefill,
                time_s=value * scale,
                prefills=max(requests - decode, 0) if prefill else 0,
                source=f"sarathi-serve {name.rsplit('/', 1)[-1]} row {line - 1}",
            )
        )
    unit = "s" if scales == {1.0} else "ms"
    return MeasurementSet(
        tuple(rows),
        {
            "source": "Sarathi-Serve OSDI'24 artifact (microsoft/sarathi-serve)",
            "file": name,
            "unit_in_file": unit,
        },
    )


def _sarathi_scale(value: float, per_token: float, tokens: int, where: str) -> float:
    """Seconds per file unit, from `per_token = time[ms] / tokens` (figure-2 and table-2 alike)."""
    if tokens <= 0 or value <= 0:
        raise MeasurementError(f"{where}: a batch needs tokens and a positive time")
    ratio = per_token * tokens / value
    if math.isclose(ratio, 1000.0, rel_tol=0.02):
        return 1.0
    if math.isclose(ratio, 1.0, rel_tol=0.02):
        return 1e-3
    raise MeasurementError(
        f"{where}: per-token time does not match the batch time in seconds or milliseconds"
    )


def refuse_sarathi_chunking(name: str) -> MeasurementError:
    return MeasurementError(
        f"{name}: this Sarathi-Serve file (figure 9) holds whole-prefill times summed over"
        " several chunks, not per-iteration times, so it cannot calibrate τ; use the"
        " osdi_figure-2_* and osdi_table-2 files"
    )


def parse_splitwise(text: str, name: str, select: Selection) -> MeasurementSet:
    """Splitwise `perf_model.csv`: prompt phase → prefill rows, token phase → solo rows.

    `prompt_time` (ms) is one iteration prefilling `batch_size` prompts of `prompt_size`
    tokens; `token_time` (ms) is the mean decode iteration with `batch_size` streams while
    generating `token_size` tokens, so its context is taken as `prompt_size + token_size/2`.
    The five repeated runs per shape become one row (median, p10, p90).
    """
    rows_in = dict_rows(text)
    groups = sorted({(r["model"], r["hardware"], r["tensor_parallel"]) for r in rows_in})
    chosen = [
        g
        for g in groups
        if (select.model is None or g[0] == select.model)
        and (select.hardware is None or g[1] == select.hardware)
        and (select.tp is None or g[2] == str(select.tp))
    ]
    if len(chosen) != 1:
        listing = "; ".join(f"--model {m} --hardware {h} --tp {t}" for m, h, t in groups)
        what = "matches none" if not chosen else f"holds {len(chosen)} matching groups"
        raise MeasurementError(f"{name}: the selection {what}; choose one of: {listing}")
    model, hardware, tp = chosen[0]
    prefill: dict[tuple[int, int], list[float]] = defaultdict(list)
    decode: dict[tuple[int, int], list[float]] = defaultdict(list)
    for line, raw in enumerate(rows_in, start=2):
        if (raw["model"], raw["hardware"], raw["tensor_parallel"]) != chosen[0]:
            continue
        try:
            prompt, batch, tokens = (
                int(raw[k]) for k in ("prompt_size", "batch_size", "token_size")
            )
            prefill[(batch * prompt, batch)].append(float(raw["prompt_time"]) / 1000.0)
            decode[(batch, prompt + tokens // 2)].append(float(raw["token_time"]) / 1000.0)
        except (KeyError, ValueError):
            raise MeasurementError(f"{name}, line {line}: unreadable Splitwise row") from None
    rows = [
        _summary_row(
            0, chunk, None, times, prefills=n, source=f"splitwise prompt phase, {n} prompt(s)"
        )
        for (chunk, n), times in sorted(prefill.items())
    ]
    rows += [
        _summary_row(batch, 0, context, times, prefills=0, source="splitwise token phase")
        for (batch, context), times in sorted(decode.items())
    ]
    return MeasurementSet(
        tuple(rows),
        {
            "source": "Splitwise simulator perf_model.csv (Mutinifni/splitwise-sim)",
            "file": name,
            "model": model,
            "hardware": hardware,
            "tensor_parallel": tp,
        },
        (
            f"{name}: Splitwise decode rows span several context lengths; τ_solo(b) averages"
            " over them",
        ),
    )


def _summary_row(
    batch: int, chunk: int, context: int | None, times: Sequence[float], prefills: int, source: str
) -> Measurement:
    median, p10, p90, count = summarise(times)
    return Measurement(
        kind=classify(batch, chunk),
        batch_size=batch,
        chunk=chunk,
        time_s=median,
        context=context,
        prefills=prefills,
        p10_s=p10,
        p90_s=p90,
        repeats=count,
        source=source,
    )


def looks_like_distserve(raw: Any) -> bool:
    if not isinstance(raw, dict) or not raw:
        return False
    first = next(iter(raw.values()))
    if not isinstance(first, dict) or not first:
        return False
    entry = next(iter(first.values()))
    return isinstance(entry, dict) and "prefill" in entry and "decoding_smallbs" in entry


DISTSERVE_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
DISTSERVE_CHUNKS = (128, 256, 512, 1024, 2048, 4096, 8192)


def parse_distserve(raw: Mapping[str, Any], name: str, select: Selection) -> MeasurementSet:
    """Points generated from DistServe's fitted latency model (ms), not raw measurements.

    prefill `a + b·Σlen + c·Σlen²` for one prompt of C tokens; decode `a + b·Σcontext + c·batch`
    with the small- or large-batch coefficients either side of the file's threshold.
    """
    groups = sorted((m, tp) for m, per_tp in raw.items() for tp in per_tp)
    chosen = [
        g
        for g in groups
        if (select.model is None or g[0] == select.model)
        and (select.tp is None or g[1] == str(select.tp))
    ]
    if len(chosen) != 1:
        listing = "; ".join(f"--model {m} --tp {t}" for m, t in groups)
        what = "matches none" if not chosen else f"holds {len(chosen)} matching entries"
        raise MeasurementError(f"{name}: the selection {what}; choose one of: {listing}")
    model, tp = chosen[0]
    entry = raw[model][tp]
    try:
        pa, pb, pc = (float(v) for v in entry["prefill"])
        small = [float(v) for v in entry["decoding_smallbs"]]
        large = [float(v) for v in entry["decoding_largebs"]]
        threshold = int(entry["decoding_large_small_bs_threshold"])
    except (KeyError, TypeError, ValueError):
        raise MeasurementError(
            f"{name}: entry {model} tp={tp} is not a DistServe profile"
        ) from None
    context = select.context
    rows: list[Measurement] = []
    for batch in DISTSERVE_BATCHES:
        a, b, c = small if batch < threshold else large
        rows.append(
            Measurement(
                "solo",
                batch,
                0,
                (a + b * batch * context + c * batch) / 1e3,
                context=context,
                source="distserve model",
            )
        )
    for chunk in DISTSERVE_CHUNKS:
        rows.append(
            Measurement(
                "prefill",
                0,
                chunk,
                (pa + pb * chunk + pc * chunk**2) / 1e3,
                prefix=0,
                prefills=1,
                source="distserve model",
            )
        )
    return MeasurementSet(
        tuple(rows),
        {
            "source": "DistServe fitted A100-80GB profile (LLMServe/DistServe)",
            "file": name,
            "model": model,
            "tensor_parallel": tp,
            "decode_context": str(context),
        },
        (
            f"{name}: points are generated from DistServe's fitted coefficients, not measured;"
            " fit statistics only say how well our curve forms reproduce DistServe's",
        ),
    )


def load_json(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MeasurementError(f"{name}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
