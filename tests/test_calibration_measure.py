"""Measuring on this machine's CPU: the decoder computes attention right, and a sweep fits."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fluidgate.calibration.architectures import ARCHITECTURES, Architecture, architecture
from fluidgate.calibration.decoder import BatchShape
from fluidgate.calibration.measure import CPU_PLAN, GPU_PLAN, SweepPlan

torch = pytest.importorskip("torch", reason="PyTorch is the optional 'calibrate' extra")


def _reference_logits(dec: object, inp: object) -> torch.Tensor:
    """The same iteration, written the slow obvious way in float64: per-head loops, explicit
    masks, keys repeated per query head; it shares no code with `decoder.forward`."""
    a = dec.arch  # type: ignore[attr-defined]
    shape = inp.shape  # type: ignore[attr-defined]
    f64 = torch.float64
    group = a.heads // a.kv_heads

    def rms(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + a.norm_eps) * w.to(f64)

    def rope(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        inv = a.rope_theta ** (-torch.arange(0, a.head_dim, 2, dtype=f64) / a.head_dim)
        ang = pos[:, None].to(f64) * inv[None, :]
        cos, sin = ang.cos()[:, None, :], ang.sin()[:, None, :]
        h = a.head_dim // 2
        return torch.cat(
            [x[..., :h] * cos - x[..., h:] * sin, x[..., h:] * cos + x[..., :h] * sin], -1
        )

    pos = torch.cat(
        [
            torch.arange(shape.prefix, shape.prefix + shape.chunk),
            torch.full((shape.decodes,), shape.context),
        ]
    )
    x = dec.embed.to(f64)[inp.tokens]  # type: ignore[attr-defined]
    for li, layer in enumerate(dec.layers):  # type: ignore[attr-defined]
        h = rms(x, layer.attn_norm) @ layer.qkv.to(f64).T
        q = h[:, : a.heads * a.head_dim].reshape(-1, a.heads, a.head_dim)
        k = h[:, a.heads * a.head_dim : (a.heads + a.kv_heads) * a.head_dim]
        v = h[:, (a.heads + a.kv_heads) * a.head_dim :]
        k, v = k.reshape(-1, a.kv_heads, a.head_dim), v.reshape(-1, a.kv_heads, a.head_dim)
        q, k = rope(q, pos), rope(k, pos)
        out = torch.zeros(x.shape[0], a.heads, a.head_dim, dtype=f64)
        for t in range(x.shape[0]):
            if t < shape.chunk:
                keys = inp.chunk_k[li][0].to(f64).clone()  # type: ignore[attr-defined]
                vals = inp.chunk_v[li][0].to(f64).clone()  # type: ignore[attr-defined]
                keys[:, shape.prefix : shape.prefix + shape.chunk] = k[: shape.chunk].transpose(
                    0, 1
                )
                vals[:, shape.prefix : shape.prefix + shape.chunk] = v[: shape.chunk].transpose(
                    0, 1
                )
                visible = shape.prefix + t + 1
            else:
                s = t - shape.chunk
                keys = inp.decode_k[li][s].to(f64).clone()  # type: ignore[attr-defined]
                vals = inp.decode_v[li][s].to(f64).clone()  # type: ignore[attr-defined]
                keys[:, shape.context] = k[t]
                vals[:, shape.context] = v[t]
                visible = shape.context + 1
            for head in range(a.heads):
                kv = head // group
                scores = keys[kv, :visible] @ q[t, head] / math.sqrt(a.head_dim)
                out[t, head] = torch.softmax(scores, 0) @ vals[kv, :visible]
        x = x + out.reshape(x.shape[0], -1) @ layer.o.to(f64).T
        gu = rms(x, layer.mlp_norm) @ layer.gate_up.to(f64).T
        gate, up = gu[:, : a.intermediate], gu[:, a.intermediate :]
        x = x + (torch.nn.functional.silu(gate) * up) @ layer.down.to(f64).T
    rows = ([shape.chunk - 1] if shape.chunk else []) + list(
        range(shape.chunk, shape.chunk + shape.decodes)
    )
    return rms(x[rows], dec.norm) @ dec.lm_head.to(f64).T  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "shape",
    [BatchShape(3, 0, 9), BatchShape(0, 5, 0, 4), BatchShape(2, 4, 6, 3)],
    ids=["decode-only", "chunk-with-prefix", "mixed"],
)
def test_decoder_iteration_matches_a_slow_reference(shape: BatchShape) -> None:
    from fluidgate.calibration import decoder

    arch = Architecture(
        name="check",
        hidden=32,
        layers=2,
        heads=4,
        kv_heads=2,
        head_dim=8,
        intermediate=48,
        vocab=50,
        qk_norm=False,
    )
    net = decoder.build(arch, torch.device("cpu"), torch.float64, seed=1)
    inputs = decoder.prepare(net, shape, seed=2)
    snapshot = decoder.prepare(net, shape, seed=2)  # the caches before `forward` writes them
    with torch.inference_mode():
        got = decoder.forward(net, inputs)
    want = _reference_logits(net, snapshot)
    assert got.shape == (int(shape.chunk > 0) + shape.decodes, arch.vocab)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_qk_norm_models_run() -> None:
    from fluidgate.calibration import decoder

    arch = ARCHITECTURES["qwen3-0.6b"].model_copy(update={"layers": 1, "vocab": 64})
    net = decoder.build(arch, torch.device("cpu"), torch.float32)
    with torch.inference_mode():
        tokens = decoder.step(net, decoder.prepare(net, BatchShape(2, 3, 4)))
    assert tokens.shape == (3,)


def test_named_shapes_match_their_published_configs() -> None:
    llama = architecture("llama3-8b")
    assert 7.9e9 < llama.parameters < 8.1e9  # Meta-Llama-3-8B has 8.03 B parameters
    assert architecture("qwen3-8b").parameters == pytest.approx(8.2e9, rel=0.02)
    with pytest.raises(ValueError, match="did you mean"):
        architecture("qwen3-8")


def test_default_sweeps_reach_b_minus_one_in_mixed_batches() -> None:
    for plan in (CPU_PLAN, GPU_PLAN):
        assert max(plan.batch_sizes) - 1 in plan.mixed_batches
        assert 0 in plan.mixed_batches


@pytest.mark.slow
def test_cpu_measure_then_fit_of_the_tiny_model_end_to_end(tmp_path: Path) -> None:
    """The default CPU sweep (tiny model), then a fit of it, end to end through the CLI.

    Its 2-minute budget is a speed target and lives in bench/, not here: a timed assertion
    fails on a loaded machine for reasons that have nothing to do with the code."""
    from fluidgate.calibration.cli import app
    from fluidgate.calibration.csvformat import read_csv
    from fluidgate.calibration.schema import load_calibration

    runner = CliRunner()
    csv, out = tmp_path / "m.csv", tmp_path / "calib.json"
    result = runner.invoke(app, ["measure", "--device", "cpu", "--out", str(csv), "--no-progress"])
    assert result.exit_code == 0, result.output
    data = read_csv(csv)
    assert len(data.rows) == len(CPU_PLAN.shapes())
    assert data.metadata["device"].startswith("cpu:")
    assert '"name":"tiny"' in data.metadata["model"]
    assert data.metadata["torch"] == torch.__version__
    assert all(r.p10_s is not None and r.p10_s <= r.time_s <= (r.p90_s or 0) for r in data.rows)
    result = runner.invoke(app, ["fit", str(csv), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "LP constants" in result.stdout
    calib = load_calibration(out)
    assert calib.alpha > 0 and calib.beta > 0 and calib.gamma > 0
    assert set(calib.r2) == {"solo", "mixed"}
    # the default range is the measured one, and the output says so
    assert "chunks 32..256: the measured range (the default)" in result.stdout
    assert calib.chunk_range == (32, 256) and calib.max_batch == 32
    # the documented walk-through ends in a policy that solves with the fitted constants
    from fluidgate.cli import app as main_app

    policy = tmp_path / "cpu.sli"
    policy.write_text(
        'cluster {\n    gpus = 8\n    max_batch = 32\n    chunk = 256 tokens\n'
        '    iteration from "calib.json"\n}\npricing bundled { input = 0.5 per Mtok;'
        ' output = 1.5 per Mtok }\nclass chat { rate = 0.5 /s per gpu; prompt = 600 tokens;'
        ' output = 250 tokens; patience = 15 s }\n', encoding="utf-8")
    doc = tmp_path / "plan.json"
    solved = runner.invoke(main_app, ["solve", str(policy), "--json", str(doc), "-q"])
    assert solved.exit_code == 0, solved.output
    cluster = json.loads(doc.read_text())["cluster"]
    assert cluster["tau_mix"] == pytest.approx(calib.alpha + calib.beta * 256, rel=1e-12)
    assert cluster["gamma"] == pytest.approx(calib.gamma, rel=1e-12)


def test_plans_validate_their_fields() -> None:
    with pytest.raises(ValueError):
        SweepPlan(batch_sizes=(1,), chunks=(1, 2), mixed_batches=(0,), context=1)


@pytest.mark.gpu
@pytest.mark.slow
def test_gpu_measure_of_a_real_shape_fits(tmp_path: Path) -> None:
    """On a CUDA machine: a short bf16 sweep of the Qwen3-0.6B shape, timed with CUDA events."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from fluidgate.calibration.cli import app
    from fluidgate.calibration.csvformat import read_csv
    from fluidgate.calibration.schema import load_calibration

    runner = CliRunner()
    csv, out = tmp_path / "m.csv", tmp_path / "calib.json"
    args = [
        "measure",
        "--device",
        "cuda",
        "--model",
        "qwen3-0.6b",
        "--batch-sizes",
        "1,4,16,64",
        "--chunks",
        "128,512,2048",
        "--mixed-batches",
        "0,15,63",
        "--repeats",
        "10",
        "--out",
        str(csv),
        "--no-progress",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = read_csv(csv)
    assert data.metadata["device"].startswith("cuda:")
    assert data.metadata["dtype"] == "bfloat16"
    result = runner.invoke(app, ["fit", str(csv), "--max-batch", "64", "--out", str(out)])
    assert result.exit_code == 0, result.output
    calib = load_calibration(out)
    assert calib.r2["mixed"] >= 0.95
