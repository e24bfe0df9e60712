"""Importing serving logs and published data into the measurement CSV, and reading it back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fluidgate.calibration.csvformat import (
    Measurement,
    MeasurementError,
    MeasurementSet,
    parse_csv,
    read_csv,
    render_csv,
    write_csv,
)
from fluidgate.calibration.fit import calibrate
from fluidgate.calibration.importers import detect, load
from fluidgate.calibration.published import Selection

FIXTURES = Path(__file__).parent / "fixtures" / "calibration"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not found at {DATA}")


def test_vllm_iteration_log_becomes_solo_mixed_and_prefill_rows() -> None:
    data = load(FIXTURES / "vllm_iterations.log")
    kinds = [r.kind for r in data.rows]
    assert kinds.count("solo") == 21
    assert kinds.count("prefill") == 5
    assert kinds.count("mixed") == 15
    first_mixed = next(r for r in data.rows if r.kind == "mixed")
    assert (first_mixed.batch_size, first_mixed.chunk, first_mixed.prefills) == (7, 128, 1)
    assert any("dummy" in note for note in data.notes)
    # The fixture follows τ_solo = 15 ms + 0.2 ms·b and τ_mix = 20 ms + 0.06 ms·C + 0.2 ms·b.
    cal = calibrate(data)
    solo, mix = cal.solo.coefficients(), cal.mix.coefficients()
    assert solo["c"] == pytest.approx(0.015, rel=0.02)
    assert solo["a"] == pytest.approx(2e-4, rel=0.05)
    assert mix["m0"] == pytest.approx(0.020, rel=0.03)
    assert mix["m_chunk"] == pytest.approx(6e-5, rel=0.02)
    assert mix["m_decode"] == pytest.approx(2e-4, rel=0.15)


def test_vllm_line_parsing_handles_prefixes_and_skips_dummies() -> None:
    from fluidgate.calibration.logs import parse_vllm

    text = (
        "(EngineCore_DP0 pid=1) INFO 01-02 03:04:05 [core.py:1] Iteration(7): 2 context"
        " requests, 300 context tokens, 5 generation requests, 5 generation tokens,"
        " iteration elapsed time: 12.50 ms\n"
        "INFO Iteration(8): 0 context requests, 0 context tokens, 0 generation requests,"
        " 0 generation tokens, iteration elapsed time: 0.10 ms (dummy)\n"
    )
    data = parse_vllm(text, "x.log")
    assert data.rows == (
        Measurement("mixed", 5, 300, 0.0125, prefills=2, source="vllm iteration 7"),
    )
    assert any("several prefills" in n for n in data.notes)


def test_sglang_decode_lines_give_window_mean_step_times() -> None:
    data = load(FIXTURES / "sglang_server.log")
    assert [(r.batch_size, r.kind) for r in data.rows] == [(8, "solo"), (16, "solo"), (32, "solo")]
    assert [r.time_s for r in data.rows] == pytest.approx([8 / 400, 16 / 727.27, 32 / 1280])
    assert "window" in data.notes[0]


def test_splitwise_needs_a_selection_and_summarises_repeats() -> None:
    path = FIXTURES / "splitwise_small.csv"
    with pytest.raises(MeasurementError, match="choose one of"):
        load(path)
    data = load(path, select=Selection(hardware="a100-80gb"))
    prefill = {(r.chunk, r.prefills): r for r in data.rows if r.kind == "prefill"}
    # 4 prompts of 512 tokens: 10 + 0.1·2048 ms, repeated at +0%, +1%, +2% → median +1%.
    row = prefill[(2048, 4)]
    assert row.time_s == pytest.approx((10 + 204.8) * 1.01 / 1000)
    assert row.repeats == 3
    assert row.p10_s is not None and row.p10_s < row.time_s
    solo = [r for r in data.rows if r.kind == "solo"]
    assert {(r.batch_size, r.context) for r in solo} == {(1, 192), (4, 192), (1, 576), (4, 576)}


@needs_shared
def test_splitwise_published_file_fits() -> None:
    data = load(
        DATA / "splitwise_sim" / "perf_model.csv",
        select=Selection(model="llama2-70b", hardware="a100-80gb", tp=8),
    )
    assert len(data.rows) == 32
    cal = calibrate(data)
    assert cal.gamma > 0 and cal.alpha > 0


@needs_shared
def test_distserve_profile_generates_points_on_its_own_model() -> None:
    path = DATA / "distserve" / "profiler-a100-80g.distserve.json"
    with pytest.raises(MeasurementError, match="choose one of"):
        load(path)
    data = load(path, select=Selection(model="facebook/opt-13b", tp=1, context=512))
    raw = json.loads(path.read_text())["facebook/opt-13b"]["1"]
    a, b, c = raw["decoding_smallbs"]
    eight = next(r for r in data.rows if r.kind == "solo" and r.batch_size == 8)
    assert eight.time_s == pytest.approx((a + b * 8 * 512 + c * 8) / 1000)
    pa, pb, pc = raw["prefill"]
    big = next(r for r in data.rows if r.chunk == 1024)
    assert big.time_s == pytest.approx((pa + pb * 1024 + pc * 1024**2) / 1000)
    assert any("not measured" in n for n in data.notes)


def test_csv_round_trip_keeps_rows_metadata_and_notes(tmp_path: Path) -> None:
    data = MeasurementSet(
        (
            Measurement(
                "solo",
                4,
                0,
                0.0123,
                context=1024,
                p10_s=0.012,
                p90_s=0.013,
                repeats=9,
                source="fluidgate measure",
            ),
            Measurement("mixed", 3, 256, 0.0456, prefix=0, prefills=1),
        ),
        {"device": "cuda: NVIDIA H100 (CUDA 12.4)", "model": '{"name":"tiny"}'},
        ("a caveat",),
    )
    path = write_csv(tmp_path / "m.csv", data)
    back = read_csv(path)
    assert back == data
    assert detect(path.read_text(), "m.csv") == "fluidgate"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("kind,batch_size,chunk\nsolo,1,0\n", "missing column"),
        ("kind,batch_size,chunk,time_s\nsolo,1,0,-1\n", "time_s must be a positive"),
        ("kind,batch_size,chunk,time_s\nsolo,1,5,0.1\n", "does not match"),
        ("kind,batch_size,chunk,time_s\ndecode,1,0,0.1\n", "kind must be one of"),
        ("kind,batch_size,chunk,time_s\nsolo,1.5,0,0.1\n", "whole number"),
        ("kind,batch_size,chunk,time_s\nsolo,x,0,0.1\n", "must be a number"),
        ("kind,batch_size,chunk,time_s\n", "no measurements"),
    ],
)
def test_malformed_measurement_csv_is_refused_with_the_line(body: str, message: str) -> None:
    with pytest.raises(MeasurementError, match=message):
        parse_csv(body, "bad.csv")


def test_unrecognised_and_missing_files_are_errors(tmp_path: Path) -> None:
    other = tmp_path / "trace.csv"
    other.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n1,2,3\n")
    with pytest.raises(MeasurementError, match="unrecognised input"):
        load(other)
    with pytest.raises(MeasurementError, match="does not exist"):
        load(tmp_path / "absent.csv")
    empty = tmp_path / "empty.log"
    empty.write_text("")
    with pytest.raises(MeasurementError, match="empty"):
        load(empty)
    with pytest.raises(MeasurementError, match="no vLLM iteration lines"):
        load(other, "vllm")


def test_render_writes_the_format_header_first() -> None:
    text = render_csv(MeasurementSet((Measurement("solo", 1, 0, 0.01),)))
    assert text.splitlines()[0] == "# fluidgate.measurements/v1"


def test_a_hand_written_csv_needs_no_kind_column(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text("batch_size,chunk,time_s\n8,0,0.02\n0,256,0.03\n7,256,0.035\n")
    data = load(path)
    assert [r.kind for r in data.rows] == ["solo", "prefill", "mixed"]
    assert [r.prefills for r in data.rows] == [0, 1, 1]
