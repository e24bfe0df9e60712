"""`fluidgate load --trace`: a replayed trace's send times, classes, counts and refusals.

Traces are a few hand-written lines; the expected send times are `(t − t₀ − offset)/speed`
worked out by hand, and the expected classes follow the reference spec's prompt-length split
at 949 tokens (tests/test_classify.py shows where it comes from).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fluidgate.cli import app, mount_harness, mount_simulator
from fluidgate.controllers.spec import ControllerSpec, load_spec
from fluidgate.harness.load import LoadRun, jsonl, trace_arrivals
from fluidgate.planning.traces import read_trace
from fluidgate.simulator.config import spec_at
from tests.export_specs import REFERENCE_SPEC
from tests.test_harness_gateway import LIMIT_S, cluster

PLAIN = """arrival,prompt,output
10.0,300,1000
10.5,3000,400
11.0,900,50
12.0,1000,10
14.0,0,0
"""
DH, PH = 0, 1


@pytest.fixture(scope="module")
def ref() -> ControllerSpec:
    return load_spec(REFERENCE_SPEC)


def _trace(tmp_path: Path, text: str, name: str = "trace.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _times(arrivals: list) -> list[float]:  # type: ignore[type-arg]
    return [a.time for a in arrivals]


def test_send_times_classes_and_tokens(ref: ControllerSpec, tmp_path: Path) -> None:
    trace = read_trace(_trace(tmp_path, PLAIN))
    got = trace_arrivals(ref, trace, duration=100.0, seed=0)
    assert _times(got) == [0.0, 0.5, 1.0, 2.0, 4.0]
    assert [a.cls for a in got] == [DH, PH, DH, PH, DH]  # 300, 3000, 900 | 949 | 1000, 0
    assert [(a.prompt, a.output) for a in got][-1] == (1, 1)  # 0 tokens are sent as 1
    assert [a.prompt for a in got[:4]] == [300, 3000, 900, 1000]


@pytest.mark.parametrize(("speed", "offset", "duration", "limit", "times"), [
    (2.0, 0.0, 100.0, None, [0.0, 0.25, 0.5, 1.0, 2.0]),
    (2.0, 0.0, 1.0, None, [0.0, 0.25, 0.5]),  # 1.0 is outside [0, 1)
    (1.0, 0.5, 100.0, None, [0.0, 0.5, 1.5, 3.5]),  # trace seconds before 0.5 are skipped
    (0.5, 1.0, 6.0, None, [0.0, 2.0]),  # half speed: (4 − 1)/0.5 = 6 is outside
    (1.0, 0.0, 100.0, 2, [0.0, 0.5]),
])
def test_speed_offset_window_and_limit(ref: ControllerSpec, tmp_path: Path, speed: float,
                                       offset: float, duration: float, limit: int | None,
                                       times: list[float]) -> None:
    trace = read_trace(_trace(tmp_path, PLAIN))
    got = trace_arrivals(ref, trace, duration, 0, speed, offset, limit)
    assert _times(got) == times


def test_unsorted_traces_are_sent_in_time_order_and_patience_is_kept(
        ref: ControllerSpec, tmp_path: Path) -> None:
    text = "arrival,prompt,output,patience\n5,3000,10,2.5\n1,300,10,7\n3,5000,10,1\n"
    got = trace_arrivals(ref, read_trace(_trace(tmp_path, text)), 100.0, 0)
    assert [(a.time, a.cls, a.patience) for a in got] == [
        (0.0, DH, 7.0), (2.0, PH, 1.0), (4.0, PH, 2.5)]


def test_patience_is_drawn_from_the_class_when_the_trace_has_none(
        ref: ControllerSpec, tmp_path: Path) -> None:
    trace = read_trace(_trace(tmp_path, PLAIN))
    one = trace_arrivals(ref, trace, 100.0, seed=4)
    assert [a.patience for a in one] == [a.patience for a in
                                         trace_arrivals(ref, trace, 100.0, seed=4)]
    assert one != trace_arrivals(ref, trace, 100.0, seed=5)
    assert all(a.patience is not None and a.patience > 0 for a in one)


def test_mooncake_and_azure_traces(ref: ControllerSpec, tmp_path: Path) -> None:
    mooncake = "\n".join(json.dumps({"timestamp": t, "input_length": p, "output_length": o})
                         for t, p, o in ((1000, 3000, 20), (1500, 40, 20), (4000, 948, 5)))
    got = trace_arrivals(ref, read_trace(_trace(tmp_path, mooncake, "m.jsonl")), 100.0, 0)
    assert [(a.time, a.cls) for a in got] == [(0.0, PH), (0.5, DH), (3.0, DH)]
    azure = ("TIMESTAMP,ContextTokens,GeneratedTokens\n"
             "2023-11-16 18:15:46.5000000,949,100\n2023-11-16 18:15:48.2500000,120,300\n")
    got = trace_arrivals(ref, read_trace(_trace(tmp_path, azure, "a.csv")), 100.0, 0, 0.5)
    assert [(a.time, a.cls) for a in got] == [(0.0, PH), (3.5, DH)]


@pytest.mark.parametrize(("text", "kw", "words"), [
    ("arrival,prompt,output,patience\n0,30,4,5\n1,30,4,-2\n", {}, "trace.csv:3: patience -2"),
    ("arrival,prompt,output\n0,30,4\n1,2000000,4\n", {}, "trace.csv:3: prompt of 2,000,000"),
    ("arrival,prompt,output\n0,30,4\n1,30,4\n", {"offset": 5.0}, "no request of trace"),
    ("arrival,prompt,output\n0,30,4\n1,30,4\n", {"speed": 0.0}, "--speed must be a positive"),
    ("arrival,prompt,output\n0,30,4\n1,30,4\n", {"limit": 0}, "--limit must be at least 1"),
])
def test_bad_replays_are_refused_naming_the_row(ref: ControllerSpec, tmp_path: Path,
                                                text: str, kw: dict[str, float],
                                                words: str) -> None:
    trace = read_trace(_trace(tmp_path, text))
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        trace_arrivals(ref, trace, 100.0, 0, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "args", "words"), [
    ("arrival,prompt,output\n0,30,4\n1,x,4\n", [], "trace.csv:3: prompt 'x' is not a finite"),
    ("time,prompt,output\n0,30,4\n", [], "cannot tell the format of trace"),
    ("arrival,prompt,output\n0,30,4\n1,30,4\n", ["--trace-format", "csv"],
     "--trace-format must be auto, azure, mooncake or plain"),
    ("arrival,prompt,output\n0,30,4\n1,30,4\n", ["--speed", "-1"], "--speed must be a positive"),
])
def test_the_command_refuses_a_bad_trace_with_exit_2(tmp_path: Path, text: str,
                                                     args: list[str], words: str) -> None:
    # nothing is sent: the trace is refused before the first request
    mount_simulator()  # in main()'s order, as tests/test_harness_cli.py does
    mount_harness()
    res = CliRunner().invoke(app, [
        "load", str(REFERENCE_SPEC), "--target", "http://127.0.0.1:9", "--duration", "10",
        "--out", str(tmp_path / "r.jsonl"), "--trace", str(_trace(tmp_path, text)), *args])
    assert res.exit_code == 2, res.output
    assert words in res.output
    assert not (tmp_path / "r.jsonl").exists()


def test_a_replay_through_the_gateway_records_every_request(ref: ControllerSpec,
                                                            tmp_path: Path) -> None:
    spec = spec_at(ref, 2)
    # patience far beyond the run: nothing abandons, whatever the engines' timing
    rows = "".join(f"{0.2 * i},{(300, 3000)[i % 3 == 0]},{4 + i},1000\n" for i in range(9))
    trace = read_trace(_trace(tmp_path, "arrival,prompt,output,patience\n" + rows))
    arrivals = trace_arrivals(spec, trace, duration=100.0, seed=0, speed=2.0)
    assert _times(arrivals) == pytest.approx([0.1 * i for i in range(9)], abs=1e-12)

    async def body() -> list:  # type: ignore[type-arg]
        async with cluster(spec, scale=20.0) as (url, _, gw):
            records = await LoadRun(spec, url, arrivals, time_scale=20.0).run()
            stats = gw.ctl.stats()
            assert [c.arrived for c in stats.classes] == [6, 3]
            return records
    records = asyncio.run(asyncio.wait_for(body(), LIMIT_S))
    assert Counter(r.outcome for r in records) == {"served": 9}
    assert [r.cls for r in records] == [("decode_heavy", "prefill_heavy")[i % 3 == 0]
                                        for i in range(9)]
    assert [r.tokens for r in records] == [4 + i for i in range(9)]
    lines = [json.loads(line) for line in jsonl(records).splitlines()]
    assert set(lines[0]) == {"cls", "send", "prompt", "output", "outcome", "status", "ttft",
                             "finish", "tokens", "chunks"}


@pytest.mark.parametrize(("command", "args", "words"), [
    ("load", ["--speed", "2"], "--speed without --trace would be ignored"),
    ("load", ["--offset", "3", "--limit", "5"], "--offset, --limit without --trace"),
    ("harness", ["--trace-format", "azure"], "--trace-format without --trace"),
])
def test_trace_options_without_a_trace_are_refused(tmp_path: Path, command: str,
                                                   args: list[str], words: str) -> None:
    # they would change nothing: a Poisson run would go ahead as if they were not given
    mount_simulator()
    mount_harness()
    first = ([str(REFERENCE_SPEC), "--target", "http://127.0.0.1:9"] if command == "load"
             else [str(Path(__file__).parent.parent / "examples" / "two_class.sli"),
                   "--gpus", "2"])
    res = CliRunner().invoke(app, [command, *first, "--duration", "10", "--out",
                                   str(tmp_path / "r"), *args])
    assert res.exit_code == 2, res.output
    assert words in " ".join(res.output.split())
    assert not (tmp_path / "r").exists()
