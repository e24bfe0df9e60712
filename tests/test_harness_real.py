"""`fluidgate harness --engine vllm|sglang` end to end, with fake engine programs on PATH.

No GPU and no vLLM or SGLang here: `tests/fake_engines.py` puts stand-ins first on PATH that
check every flag and variable the harness gives them, then become emulated engines. So these
tests prove the command lines, GPU placement, readiness, the gateway in front, the request
accounting and that no process is left, but not that the real servers accept the plan
(docs/harness.md says what a GPU run must still show).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fluidgate.cli import app, mount_harness, mount_simulator
from fluidgate.harness.bodies import TokenPrompts, chunk_tokens
from tests.fake_engines import alive, base_env, install
from tests.harness_support import processes_mentioning

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "examples" / "two_class.sli"
Fakes = tuple[dict[str, str], Path, Path]  # a run's environment, the records' folder, --out


@pytest.fixture(autouse=True)
def _mounted() -> None:
    mount_simulator()
    mount_harness()


def _harness(env: dict[str, str], *args: str, timeout: float = 240
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fluidgate", "harness", str(POLICY), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


@pytest.fixture
def fakes(tmp_path: Path) -> Fakes:
    """(the environment of a run that finds the fakes first, where they record, --out)."""
    bin_dir, packages = install(tmp_path)
    records = tmp_path / "records"
    records.mkdir()
    return base_env(bin_dir, packages, records), records, tmp_path / "run"


def _records(where: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted(where.glob("*.json"))]


def _check_nothing_left(records: list[dict[str, object]], out: Path) -> None:
    pids = [int(str(r[k])) for r in records for k in ("pid", "sleeper")]
    assert pids and [p for p in pids if alive(p)] == []
    assert processes_mentioning(str(out)) == []  # the gateway (its spec lies under the run)


def _accounted(out: Path) -> dict[str, object]:
    report: dict[str, object] = json.loads((out / "report.json").read_text())
    req = report["requests"]
    assert isinstance(req, dict)
    assert req["sent"] == req["served"] + req["abandoned"] + req["rejected"] + req["failed"]
    assert req["failed"] == 0 and req["rejected"] == 0 and req["served"] > 0
    lines = (out / "requests.jsonl").read_text().splitlines()
    assert len(lines) == req["sent"]
    served = [json.loads(x) for x in lines if json.loads(x)["outcome"] == "served"]
    assert all(r["tokens"] == r["output"] for r in served)
    return report


def test_vllm_engines_two_per_gpu_end_to_end(fakes: Fakes) -> None:
    env, records, out = fakes
    env = dict(env, FAKE_TIME_SCALE="50", FAKE_MEMORY="0.45")
    # N = 3 plans 1 mixed + 2 solo engines; at two per GPU they need GPUs 0, 0, 1
    done = _harness(env, "--engine", "vllm", "--model", "qwen3-0.6b", "--gpus", "3",
                    "--engines-per-gpu", "2", "--duration", "6", "--out", str(out),
                    "--no-simulate")
    assert done.returncode == 0, done.stderr
    report = _accounted(out)
    assert report["engine"] == "vllm"
    assert report["protocol"] == "vllm"
    engines = report["engines"]
    assert isinstance(engines, list)
    assert [(e["role"], e["gpu"]) for e in engines] == [("mixed", "0"), ("solo", "0"),
                                                        ("solo", "1")]
    assert all(e["command"].startswith(f"CUDA_VISIBLE_DEVICES={e['gpu']} ")
               and " serve " in e["command"] for e in engines)
    seen = _records(records)
    assert sorted((r["role"], r["gpu"]) for r in seen) == [("mixed", "0"), ("solo", "0"),
                                                           ("solo", "1")]
    assert len({r["port"] for r in seen}) == 3 and len({r["side_port"] for r in seen}) == 3
    assert {e["url"] for e in engines} == {f"http://127.0.0.1:{r['port']}" for r in seen}
    assert "engine 0 (mixed, GPU 0): CUDA_VISIBLE_DEVICES=0" in done.stderr
    _check_nothing_left(seen, out)


def test_sglang_servers_end_to_end(fakes: Fakes) -> None:
    env, records, out = fakes
    env = dict(env, FAKE_TIME_SCALE="50")
    done = _harness(env, "--engine", "sglang", "--model", "qwen3-0.6b", "--gpus", "2",
                    "--duration", "6", "--out", str(out), "--no-simulate")
    assert done.returncode == 0, done.stderr
    report = _accounted(out)
    assert report["engine"] == "sglang"
    assert report["protocol"] == "sglang"  # the gateway paired the halves by room
    seen = sorted(_records(records), key=lambda r: str(r["role"]))
    assert [(r["role"], r["mode"], r["gpu"]) for r in seen] == [("mixed", "prefill", "0"),
                                                                ("solo", "decode", "1")]
    assert seen[0]["bootstrap"] is not None and seen[1]["bootstrap"] is None
    assert "-m sglang.launch_server" in done.stderr
    # the plan keeps decodes on the mixed engine, which SGLang's prefill servers cannot run
    assert "expected to fail on SGLang servers" in done.stderr
    _check_nothing_left(seen, out)


def test_an_engine_that_dies_is_named_with_its_command_and_log(fakes: Fakes) -> None:
    env, _, out = fakes
    env = dict(env, FAKE_FAIL="1")
    done = _harness(env, "--engine", "vllm", "--model", "qwen3-0.6b", "--gpus", "2",
                    "--duration", "5", "--out", str(out), "--no-simulate")
    assert done.returncode == 2
    assert "exited with status 1 before it answered /health" in done.stderr
    assert "command: CUDA_VISIBLE_DEVICES=" in done.stderr and " serve " in done.stderr
    assert "CUDA out of memory" in done.stderr  # the tail of its log
    assert "Traceback" not in done.stderr


def test_an_engine_that_never_answers_times_out_and_is_stopped(fakes: Fakes) -> None:
    env, records, out = fakes
    env = dict(env, FAKE_HANG="1")
    done = _harness(env, "--engine", "vllm", "--model", "qwen3-0.6b", "--gpus", "2",
                    "--duration", "5", "--out", str(out), "--no-simulate",
                    "--start-timeout", "10")  # ample for the fakes to record themselves
    assert done.returncode == 2
    assert "did not answer http://127.0.0.1:" in done.stderr and "within 10 s" in done.stderr
    seen = _records(records)
    assert len(seen) == 2  # both started (one per GPU), both stopped
    _check_nothing_left(seen, out)


def _invoke(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str,
            **fakes: bool) -> tuple[int, str]:
    bin_dir, _ = install(tmp_path, **fakes)
    monkeypatch.setenv("PATH", str(bin_dir))  # nothing else: no real vllm or nvidia-smi
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    res = CliRunner().invoke(app, ["harness", str(POLICY), "--duration", "5", "--out",
                                   str(tmp_path / "run"), *args])
    return res.exit_code, " ".join(res.output.split())


@pytest.mark.parametrize(("engine", "fakes", "said"), [
    ("vllm", {"vllm": False}, "no 'vllm' program on PATH; install it with "
     "`pip install vllm==0.33.0`"),
    ("sglang", {"sglang": False}, "no 'sglang' program on PATH; install it with "
     "`pip install 'sglang[all]==0.5.23'`"),
    ("vllm", {"nvidia_smi": False}, "real engines need an NVIDIA GPU, and there is no "
     "'nvidia-smi' on PATH"),
])
def test_what_is_missing_is_said_with_how_to_get_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, engine: str,
        fakes: dict[str, bool], said: str) -> None:
    code, output = _invoke(monkeypatch, tmp_path, "--engine", engine, "--model",
                           "qwen3-0.6b", "--gpus", "2", **fakes)
    assert code == 2
    assert said in output
    assert not (tmp_path / "run").exists()  # refused before anything was solved or written


def test_too_few_gpus_and_options_for_the_other_kind_are_refused(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    code, output = _invoke(monkeypatch, tmp_path, "--engine", "vllm", "--model",
                           "qwen3-0.6b", "--gpus", "5", "--engines-per-gpu", "2")
    assert code == 2 and "needs 3 GPUs, and 2 are visible (0, 1)" in output
    for args, said in [(["--engine", "vllm", "--gpus", "2"], "needs --model"),
                       (["--engine", "vllm", "--model", "tiny", "--gpus", "2",
                         "--time-scale", "10"], "real engines run in real time"),
                       (["--gpus", "2", "--engines-per-gpu", "2"],
                        "--engines-per-gpu is for --engine vllm"),
                       (["--engine", "vllm", "--model", "qwen3-0.6", "--gpus", "2",
                         "--no-simulate"], "did you mean qwen3-0.6b")]:
        res = CliRunner().invoke(app, ["harness", str(POLICY), "--duration", "5", "--out",
                                       str(tmp_path / "x"), *args])
        assert res.exit_code == 2 and said in " ".join(res.output.split()), res.output


def test_cuda_visible_devices_narrows_the_gpus(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    from fluidgate.harness.prereqs import visible_gpus

    bin_dir, _ = install(tmp_path)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAKE_GPUS", "4")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_gpus() == ["0", "1", "2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, 1")
    assert visible_gpus() == ["3", "1"]


def test_token_prompts_are_ids_of_the_prompt_length_and_differ() -> None:
    body = TokenPrompts((5, 9), seed=1)
    a, b = body(300, 7), body(300, 7)
    assert len(a["prompt"]) == 300 and all(5 <= t < 9 for t in a["prompt"])
    assert a["prompt"] != b["prompt"]  # no shared prefix for an engine to reuse
    assert a["max_tokens"] == 7 and a["ignore_eos"] is True and a["stream"] is True
    assert a["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}


def test_chunk_tokens_counts_the_emulator_tag_or_the_usage_rise() -> None:
    # a gateway-made first token, then a real engine's chunks with cumulative usage
    events = [{"fluidgate": {"tokens": 1}}, {"usage": {"completion_tokens": 3}},
              {"usage": {"completion_tokens": 3}}, {"choices": []},
              {"usage": {"completion_tokens": 9}}, ["not", "a", "dict"]]
    seen, counts = 0, []
    for e in events:
        n, seen = chunk_tokens(e, seen)
        counts.append(n)
    assert counts == [1, 3, 0, 0, 6, 0]
