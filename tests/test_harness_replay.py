"""`fluidgate harness --trace` and `--engine emulated --model`: end to end on this machine.

The trace is a few hand-written rows whose window and classes are worked out here (prompt 300
is the reference policy's decode_heavy class, 3000 its prefill_heavy one); the model run uses
the tiny calibration decoder on the CPU for a few model seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fluidgate.cli import app, mount_harness, mount_simulator

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "examples" / "two_class.sli"
RUN_LIMIT_S = 240


@pytest.fixture(autouse=True)
def _mounted() -> None:
    mount_simulator()  # in main()'s order, as tests/test_harness_cli.py does
    mount_harness()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "fluidgate", "harness", str(POLICY), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=RUN_LIMIT_S, check=False)


def test_a_replayed_trace_is_sent_accounted_and_simulated(tmp_path: Path) -> None:
    # 40 rows 0.7 trace s apart from t = 100: the window [0, 20) model s at speed 1 holds
    # rows 0..28 (0.7 × 28 = 19.6 < 20 ≤ 0.7 × 29 = 20.3); every third row is prefill_heavy
    rows = [(100 + 0.7 * i, 3000 if i % 3 == 0 else 300, 5 + i % 4) for i in range(40)]
    trace = tmp_path / "trace.csv"
    trace.write_text("arrival,prompt,output\n" + "".join(f"{t:.1f},{p},{o}\n"
                                                          for t, p, o in rows))
    in_window = [r for r in rows if r[0] - 100 < 20 - 1e-9]
    assert len(in_window) == 29
    heavy = sum(p == 3000 for _, p, _ in in_window)  # rows 0, 3, …, 27: 10
    out = tmp_path / "run"
    done = _run("--engine", "emulated", "--gpus", "2", "--time-scale", "20", "--duration",
                "20", "--trace", str(trace), "--out", str(out))
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    req = report["requests"]
    assert req["sent"] == 29
    assert req["sent"] == req["served"] + req["abandoned"] + req["rejected"] + req["failed"]
    assert req["failed"] == 0
    sent = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    assert [r["send"] for r in sent] == pytest.approx([t - 100 for t, _, _ in in_window],
                                                      abs=1e-6)
    assert [r["prompt"] for r in sent] == [p for _, p, _ in in_window]
    expected = {"prefill_heavy": heavy / 20, "decode_heavy": (29 - heavy) / 20}
    for block in ("measured", "simulated"):
        got = {name: c["arrivals"] for name, c in report[block]["classes"].items()}
        assert got == pytest.approx(expected, rel=1e-12), block
    assert report["trace"] == {"file": str(trace), "format": "auto", "speed": 1.0,
                               "offset": 0.0}
    assert report["predicted"]["revenue_per_gpu"] == pytest.approx(297.7162, rel=1e-4)


@pytest.mark.parametrize(("text", "offset", "words"), [
    ("arrival,prompt,output\n0,30,4\n1,x,4\n", "0", "trace.csv:3: prompt 'x' is not a finite"),
    ("arrival,prompt,output\n0,30,4\n1,30,4\n", "5", "no request of trace"),
])
def test_a_bad_trace_is_refused_before_anything_starts(tmp_path: Path, text: str,
                                                       offset: str, words: str) -> None:
    trace = tmp_path / "trace.csv"
    trace.write_text(text)
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["harness", str(POLICY), "--gpus", "2", "--duration", "10",
                                   "--out", str(out), "--trace", str(trace), "--offset", offset])
    assert res.exit_code == 2, res.output
    assert words in res.output
    assert not out.exists()  # refused before the run directory, the engines or the load


def test_emulated_model_refuses_a_time_scale(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["harness", str(POLICY), "--gpus", "2", "--duration", "10",
                                   "--out", str(tmp_path / "run"), "--model", "tiny",
                                   "--time-scale", "10"])
    assert res.exit_code == 2, res.output
    assert "--time-scale 10 cannot apply to real forward passes" in res.output
    res = CliRunner().invoke(app, ["harness", str(POLICY), "--gpus", "2", "--duration", "10",
                                   "--out", str(tmp_path / "run"), "--model", "tinny"])
    assert res.exit_code == 2, res.output
    assert "unknown model 'tinny'" in res.output and not (tmp_path / "run").exists()


def test_emulated_engines_run_real_passes_with_model(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "run"
    done = _run("--engine", "emulated", "--model", "tiny", "--gpus", "2", "--duration", "3",
                "--out", str(out), "--no-simulate")
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["model"] == "tiny" and report["time_scale"] == 1.0
    req = report["requests"]
    assert req["served"] > 0 and req["failed"] == 0
    assert req["sent"] == req["served"] + req["abandoned"] + req["rejected"] + req["failed"]
    logs = sorted((out / "logs").glob("engine-*.log"))  # each engine says what it runs
    assert len(logs) == 2
    assert all("real forward passes of tiny on " in log.read_text() for log in logs)
