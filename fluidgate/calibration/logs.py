"""Iteration times from serving-stack logs (vLLM, SGLang).

Production engines already time every step; importing their logs calibrates against the exact
kernels, scheduler and hardware that will serve traffic, which a synthetic benchmark cannot.

vLLM (`--enable-logging-iteration-details`) logs one line per engine step:

    Iteration(41): 1 context requests, 256 context tokens, 15 generation requests,
    15 generation tokens, iteration elapsed time: 23.41 ms

(one line in the log). A "context request" is a request still prefilling, so a chunked prefill
counts as one; the elapsed time is the engine's wall time waiting for that step's result.

SGLang does not log per-step times. Its scheduler logs a `Decode batch` line every
`--decode-log-interval` steps with the running requests and the generation throughput over
that window, so `running / throughput` is the *mean* decode step time over the window. That
is a decode-only (solo) estimate, and prefills that ran inside the window inflate it; the
import says so in a note that the fit carries into the calibration's warnings.
"""

from __future__ import annotations

import re

from fluidgate.calibration.csvformat import (
    Measurement,
    MeasurementError,
    MeasurementSet,
    classify,
)

VLLM_LINE = re.compile(
    r"Iteration\((?P<index>\d+)\):\s*(?P<ctx_req>\d+) context requests,\s*"
    r"(?P<ctx_tok>\d+) context tokens,\s*(?P<gen_req>\d+) generation requests,\s*"
    r"(?P<gen_tok>\d+) generation tokens,\s*iteration elapsed time:\s*"
    r"(?P<ms>[0-9]*\.?[0-9]+(?:[eE][-+]?\d+)?) ms(?P<dummy> \(dummy\))?"
)

SGLANG_DECODE_LINE = re.compile(
    r"Decode batch(?: \[\d+\])?[.,]\s*#running-req:\s*(?P<running>\d+),.*?"
    r"gen throughput \(token/s\):\s*(?P<throughput>[0-9]*\.?[0-9]+)"
)


def looks_like_vllm(text: str) -> bool:
    return VLLM_LINE.search(text) is not None


def looks_like_sglang(text: str) -> bool:
    return SGLANG_DECODE_LINE.search(text) is not None


def parse_vllm(text: str, name: str) -> MeasurementSet:
    """One row per logged step; dummy (data-parallel padding) and empty steps are skipped."""
    rows: list[Measurement] = []
    dummies = 0
    for match in VLLM_LINE.finditer(text):
        if match["dummy"]:
            dummies += 1
            continue
        ctx_req, ctx_tok = int(match["ctx_req"]), int(match["ctx_tok"])
        gen_req = int(match["gen_req"])
        seconds = float(match["ms"]) / 1000.0
        if ctx_tok + gen_req == 0 or seconds <= 0:
            continue
        chunk = ctx_tok if ctx_req else 0
        rows.append(
            Measurement(
                kind=classify(gen_req, chunk),
                batch_size=gen_req,
                chunk=chunk,
                time_s=seconds,
                prefills=ctx_req,
                source=f"vllm iteration {match['index']}",
            )
        )
    if not rows:
        raise MeasurementError(
            f"{name}: no vLLM iteration lines found; start vLLM with"
            " --enable-logging-iteration-details and import its log"
        )
    notes = []
    if dummies:
        notes.append(f"{name}: skipped {dummies} dummy (data-parallel padding) iterations")
    if any(row.prefills > 1 for row in rows):
        notes.append(
            f"{name}: some steps carried several prefills; their tokens are summed into one chunk"
        )
    return MeasurementSet(
        tuple(rows),
        {"source": "vllm --enable-logging-iteration-details", "file": name},
        tuple(notes),
    )


def parse_sglang(text: str, name: str) -> MeasurementSet:
    """Solo rows estimated from `Decode batch` lines (see the module docstring for the caveat)."""
    rows: list[Measurement] = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        match = SGLANG_DECODE_LINE.search(line)
        if match is None:
            continue
        running, throughput = int(match["running"]), float(match["throughput"])
        if running == 0 or throughput <= 0:
            continue
        rows.append(
            Measurement(
                kind="solo",
                batch_size=running,
                chunk=0,
                time_s=running / throughput,
                source=f"sglang decode log line {line_no} (window mean)",
            )
        )
    if not rows:
        raise MeasurementError(
            f"{name}: no SGLang 'Decode batch' lines with a gen throughput found"
        )
    note = (
        f"{name}: SGLang logs no per-step times; solo times are running requests / generation"
        " throughput averaged over each --decode-log-interval window, and prefills inside a"
        " window make them too slow. SGLang logs give no mixed-batch times: measure or import"
        " those from elsewhere."
    )
    return MeasurementSet(
        tuple(rows), {"source": "sglang scheduler decode log", "file": name}, (note,)
    )
