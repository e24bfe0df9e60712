"""The engine's `--model` mode: real forward passes of the calibration decoder per iteration.

A decoder far smaller than `tiny` keeps each pass well under a millisecond on a CPU. The
engines' curves say 1,000 s per iteration, so a test that finished went by measured passes;
durations are checked against the requests' model-time spans and, within a loose factor,
against the same pass timed separately. Every engine is started by its test on 127.0.0.1
and stopped by it, with a bounded number of requests under a time limit.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from typer.testing import CliRunner

from fluidgate.calibration.architectures import Architecture
from fluidgate.cli import app, mount_harness, mount_simulator
from fluidgate.harness.engine import EngineServer
from fluidgate.harness.serve import start_site
from fluidgate.harness.timing import EngineTiming
from fluidgate.model import CurveForm, IterationCurve
from tests.test_harness_cli import POLICY
from tests.test_harness_engine import post

ARCH = Architecture(name="test", hidden=32, layers=2, heads=4, kv_heads=2, head_dim=8,
                    intermediate=48, vocab=50)
B, C, CONTEXT = 4, 16, 32
SLOW = IterationCurve(CurveForm.CONSTANT, 1000.0)  # what the curves would take, per iteration
TIMING = EngineTiming(B, C, SLOW, SLOW)
LIMIT_S = 60.0


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One PyTorch thread, as `fluidgate engine --model` and `calibrate measure` use on a CPU:
    on a busy machine, a thread pool's workers wait for each other's time slices, which
    turns sub-millisecond passes into tens of milliseconds at random."""
    try:
        import torch
    except ImportError:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _torch() -> Any:
    return pytest.importorskip("torch", reason="PyTorch is the optional 'calibrate' extra")


@asynccontextmanager
async def model_engine(mixed: bool, passes: Any = None
                       ) -> AsyncIterator[tuple[str, aiohttp.ClientSession, Any]]:
    from fluidgate.harness.passes import DecoderCore, DecoderPasses

    passes = passes or DecoderPasses(ARCH, B, C, CONTEXT, "cpu")
    core = DecoderCore(TIMING, mixed, passes)
    runner, port = await start_site(EngineServer(core, "m").app(), 0)
    try:
        async with aiohttp.ClientSession() as session:
            yield f"http://127.0.0.1:{port}", session, core
    finally:
        await runner.cleanup()


def run(body: Any) -> None:
    asyncio.run(asyncio.wait_for(body(), LIMIT_S))


def _ids(text: str) -> list[int]:
    return [int(w) for w in text.split()]


def test_streamed_request_returns_its_tokens_as_generated_ids() -> None:
    _torch()
    prompt = [3, 10**30, -7, *range(37)]  # ids outside the vocabulary wrap, never crash

    async def body() -> None:
        async with model_engine(mixed=True) as (url, s, _):
            payload = {"prompt": prompt, "max_tokens": 7, "stream": True}
            async with s.post(url + "/v1/completions", json=payload) as r:
                assert r.status == 200
                lines = [ln.decode().strip() async for ln in r.content]
            events = [ln[6:] for ln in lines if ln.startswith("data: ")]
            assert events[-1] == "[DONE]"
            chunks = [json.loads(e) for e in events[:-1]]
            assert sum(c["fluidgate"]["tokens"] for c in chunks) == 7
            ids = [i for c in chunks for i in _ids(c["choices"][0]["text"])]
            assert len(ids) == 7 and all(0 <= i < ARCH.vocab for i in ids)
            assert chunks[-1]["usage"] == {"prompt_tokens": 40, "completion_tokens": 7,
                                           "total_tokens": 47}
    run(body)


def test_iteration_times_are_the_measured_passes() -> None:
    torch = _torch()
    from fluidgate.calibration import decoder
    from fluidgate.calibration.decoder import BatchShape
    from fluidgate.calibration.measure import timer

    log: list[Any] = []

    async def body() -> None:
        async with model_engine(mixed=True) as (url, s, core):
            status, out = await post(s, url, {"prompt_tokens": 40, "max_tokens": 15})
            assert status == 200 and len(_ids(out["choices"][0]["text"])) == 15
            log.extend(core.log)
            # 40 prompt tokens in chunks of 16, 16 and 8, then one decode per iteration;
            # the request's model-time span is exactly the sum of the measured passes
            assert [(r.chunk, r.decodes) for r in log] == [(16, 0), (16, 0), (8, 0)] + [
                (0, 1)] * 15
            span = out["fluidgate"]["finish_time"] - out["fluidgate"]["start_time"]
            assert span == pytest.approx(sum(r.seconds for r in log), rel=1e-9, abs=1e-12)
    run(body)
    assert all(r.seconds > 0 for r in log)
    # The same one-stream decode pass, built and timed apart from the engine
    with torch.inference_mode():
        net = decoder.build(ARCH, torch.device("cpu"), torch.float32)
        inputs = decoder.prepare(net, BatchShape(1, 0, CONTEXT))
        clock = timer(torch, torch.device("cpu"))
        apart = [clock(lambda: decoder.step(net, inputs)) for _ in range(20)]
    engine = [r.seconds for r in log if r.chunk == 0]
    ratio = statistics.median(engine) / statistics.median(apart)
    assert 0.1 < ratio < 10, f"engine {sorted(engine)}, apart {sorted(apart)}"


def test_two_step_protocol_batch_limit_and_bad_bodies() -> None:
    _torch()

    async def body() -> None:
        async with model_engine(mixed=True) as (mixed, s, _), \
                model_engine(mixed=False) as (solo, s2, solo_core):
            status, pre = await post(s, mixed, {
                "prompt_tokens": 20, "max_tokens": 1,
                "kv_transfer_params": {"do_remote_decode": True}})
            assert status == 200 and pre["usage"]["completion_tokens"] == 1
            assert len(_ids(pre["choices"][0]["text"])) == 1
            kv = pre["kv_transfer_params"]
            assert kv["do_remote_prefill"] is True
            status, err = await post(s2, solo, b"{not json")
            assert status == 400 and err["error"]["code"] == 400
            outs = await asyncio.gather(*(post(s2, solo, {
                "prompt": [1, 2], "max_tokens": 3, "kv_transfer_params": kv})
                for _ in range(6)))
            assert all(st == 200 and len(_ids(o["choices"][0]["text"])) == 3
                       for st, o in outs)
            sizes = [r.decodes for r in solo_core.log]
            assert max(sizes) == B and sum(sizes) == 6 * 3  # 6 streams, at most B at once
    run(body)


def test_a_pass_runs_off_the_event_loop() -> None:
    # The first pass waits (in its worker thread) until /health has answered: had the pass
    # run on the event loop, /health could not answer and the test would hit its limit.
    _torch()
    from fluidgate.harness.passes import DecoderPasses

    passes = DecoderPasses(ARCH, B, C, CONTEXT, "cpu")
    inner = passes.run
    started, answered = threading.Event(), threading.Event()

    def gated(chunk: Sequence[int], prefix: int, decodes: Sequence[int]
              ) -> tuple[list[int], float]:
        started.set()
        answered.wait(LIMIT_S)
        return inner(chunk, prefix, decodes)

    passes.run = gated  # type: ignore[method-assign]

    async def body() -> None:
        async with model_engine(mixed=True, passes=passes) as (url, s, _):
            request = asyncio.create_task(post(s, url, {"prompt_tokens": 5, "max_tokens": 2}))
            while not started.is_set():
                await asyncio.sleep(0.01)
            async with s.get(url + "/health") as r:
                assert r.status == 200 and (await r.json())["prefills"] == 1
            answered.set()
            status, out = await request
            assert status == 200 and out["usage"]["completion_tokens"] == 2
    try:
        run(body)
    finally:
        answered.set()


def test_a_raising_pass_fails_the_request_and_the_engine() -> None:
    # A real pass raises in its worker thread, as a CUDA error would: the request gets a
    # 500 that says why and /health turns 503, instead of the request hanging forever.
    _torch()
    from fluidgate.harness.passes import DecoderPasses

    passes = DecoderPasses(ARCH, B, C, CONTEXT, "cpu")

    def broken(chunk: Sequence[int], prefix: int, decodes: Sequence[int]
               ) -> tuple[list[int], float]:
        raise RuntimeError("CUDA error: device-side assert triggered (test)")

    passes.run = broken  # type: ignore[method-assign]

    async def body() -> None:
        async with model_engine(mixed=True, passes=passes) as (url, s, core):
            status, out = await post(s, url, {"prompt_tokens": 5, "max_tokens": 2})
            assert status == 500 and out["error"]["type"] == "engine_failed"
            assert "device-side assert" in out["error"]["message"]
            async with s.get(url + "/health") as r:
                assert r.status == 503
            assert core.iterations == 0
    run(body)


@pytest.fixture
def cli() -> CliRunner:
    mount_simulator()  # in main()'s order, as tests/test_harness_cli.py does
    mount_harness()
    return CliRunner()


def test_model_mode_without_torch_says_how_to_install_it(
        cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    res = cli.invoke(app, ["engine", "--role", "mixed", "--policy", str(POLICY),
                           "--model", "tiny"])
    assert res.exit_code == 2
    assert "needs PyTorch" in res.output and "pip install -e '.[calibrate]'" in res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "tiny", "--time-scale", "10"], "cannot apply to real forward passes"),
    (["--model", "tinny"], "did you mean tiny"),
    (["--model", "tiny", "--context", "-1"], "--context must be 0 or more"),
])
def test_model_mode_refuses_bad_options(cli: CliRunner, args: list[str], message: str) -> None:
    res = cli.invoke(app, ["engine", "--role", "solo", "--policy", str(POLICY), *args])
    assert res.exit_code == 2 and message in res.output
