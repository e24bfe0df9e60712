"""`fluidgate harness|engine|gateway|load` end to end: accounting, no orphans, clear refusals.

Each run starts its own engines and gateway on 127.0.0.1 (ports picked by the kernel) and is
bounded: a few GPUs, a short model duration at a high time scale, a wall-clock timeout.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fluidgate.cli import app, mount_harness, mount_simulator
from tests.harness_support import processes_mentioning

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "examples" / "two_class.sli"


def _cli(*args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "fluidgate", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(autouse=True)
def _mounted() -> None:
    mount_simulator()  # in main()'s order, so the shared app's --help stays as documented
    mount_harness()


def test_harness_accounts_for_every_request_and_leaves_no_process(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _cli("harness", str(POLICY), "--gpus", "3", "--duration", "20", "--time-scale",
                "10", "--out", str(out), "--no-simulate")
    _, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr
    report = json.loads((out / "report.json").read_text())
    req = report["requests"]
    assert req["sent"] == req["served"] + req["abandoned"] + req["rejected"] + req["failed"]
    assert req["failed"] == 0 and req["rejected"] == 0
    lines = (out / "requests.jsonl").read_text().splitlines()
    assert len(lines) == req["sent"] > 20  # 1 req/s/GPU × 3 GPUs × 20 s ≈ 60
    assert report["mixed_gpus"] + report["solo_gpus"] == 3
    assert set(report["measured"]["classes"]) == {"decode_heavy", "prefill_heavy"}
    assert report["predicted"]["revenue_per_gpu"] == pytest.approx(297.7162, rel=1e-4)
    assert (out / "measured_vs_predicted.png").stat().st_size > 1000
    assert processes_mentioning(str(out)) == []


def test_ctrl_c_stops_every_child(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _cli("harness", str(POLICY), "--gpus", "2", "--duration", "600", "--time-scale",
                "5", "--out", str(out), "--no-simulate")
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    line = ""
    while "sent" not in line and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
    assert "sent" in line, "the load never started"
    assert processes_mentioning(str(out))  # its engines and gateway are running
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    time.sleep(0.5)
    assert processes_mentioning(str(out)) == []


def test_engine_refuses_a_taken_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = CliRunner().invoke(app, ["engine", "--role", "solo", "--policy", str(POLICY),
                                       "--port", str(port)])
    assert res.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in res.output


def test_engine_needs_exactly_one_timing_source() -> None:
    res = CliRunner().invoke(app, ["engine", "--role", "mixed"])
    assert res.exit_code == 2 and "exactly one of --spec" in res.output
