"""Time real decoder iterations on this machine and record them as measurements.

The sweep covers the two curves the LP needs: decode-only batches of b streams (τ_solo) and
batches that carry one C-token prefill chunk plus b decodes (τ_mix; b = 0 is a prefill-only
batch). Each shape is warmed up first (allocator, kernel selection, caches), then timed
`repeats` times after a device synchronisation, with CUDA events on a GPU (device time, no
host jitter) and `perf_counter` on the CPU; the median goes into the CSV with p10/p90 so
noisy shapes are visible.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from datetime import UTC, datetime
from types import ModuleType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

import fluidgate
from fluidgate.calibration.architectures import Architecture, architecture
from fluidgate.calibration.csvformat import (
    Measurement,
    MeasurementSet,
    classify,
    model_json,
    summarise,
)
from fluidgate.calibration.decoder import BatchShape

INSTALL_HINT = "pip install -e '.[calibrate]' in the fluidgate checkout"

DeviceChoice = Literal["auto", "cpu", "cuda"]
DtypeChoice = Literal["auto", "float32", "bfloat16", "float16"]


class MeasureError(Exception):
    """The measurement cannot run; the message says what to change."""


class TorchMissing(MeasureError):
    """PyTorch is an optional extra; this says how to get it."""


class SweepPlan(BaseModel):
    """Which batch shapes to time and how often."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_sizes: tuple[int, ...] = Field(min_length=2)
    chunks: tuple[int, ...] = Field(min_length=2)
    mixed_batches: tuple[int, ...] = Field(min_length=1)
    context: int = Field(ge=0)
    prefix: int = Field(default=0, ge=0)
    warmup: int = Field(default=3, ge=0)
    repeats: int = Field(default=10, ge=1)
    passes: int = Field(default=1, ge=1)

    def shapes(self) -> list[BatchShape]:
        solo = [BatchShape(b, 0, self.context) for b in sorted(set(self.batch_sizes))]
        mixed = [
            BatchShape(b, c, self.context, self.prefix)
            for c in sorted(set(self.chunks))
            for b in sorted(set(self.mixed_batches))
        ]
        return solo + mixed


# Mixed batches reach B − 1 = 127 so that any --max-batch up to 128 is interpolated, not guessed.
GPU_PLAN = SweepPlan(
    batch_sizes=(1, 2, 4, 8, 16, 32, 64, 128),
    chunks=(128, 256, 512, 1024, 2048),
    mixed_batches=(0, 16, 64, 127),
    context=1024,
    warmup=5,
    repeats=20,
)
# Sized so the whole sweep of the `tiny` model takes about twenty seconds on one CPU core; the
# long context makes the decode curve's KV-cache reads visible above timer noise, and five
# passes over the sweep spread a burst of load from other processes over all shapes instead
# of spoiling one.
CPU_PLAN = SweepPlan(
    batch_sizes=(1, 2, 4, 8, 16, 32),
    chunks=(32, 64, 128, 256),
    mixed_batches=(0, 8, 31),
    context=1024,
    warmup=2,
    repeats=15,
    passes=5,
)
WARM_SECONDS = 1.0


def require_torch(purpose: str = "measuring") -> ModuleType:
    try:
        import torch
    except ImportError:
        raise TorchMissing(
            f"{purpose} needs PyTorch, which is not installed; install it with: {INSTALL_HINT}"
        ) from None
    return torch


def pick_device(torch: ModuleType, choice: DeviceChoice) -> Any:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise MeasureError("--device cuda was asked for, but PyTorch sees no CUDA device")
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def pick_dtype(torch: ModuleType, device: Any, choice: DtypeChoice) -> Any:
    """bfloat16 on a GPU (what serving uses); float32 on a CPU, where bf16 matmuls are slow."""
    if choice == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, choice)


def environment(
    torch: ModuleType, device: Any, arch: Architecture, dtype: Any, plan: SweepPlan, seed: int
) -> dict[str, str]:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        extra = f"CUDA {torch.version.cuda}"
    else:
        name = _cpu_name()
        extra = f"{torch.get_num_threads()} thread(s)"
    return {
        "device": f"{device.type}: {name} ({extra})",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "fluidgate": fluidgate.__version__,
        "model": model_json(arch.model_dump()),
        "dtype": str(dtype).removeprefix("torch."),
        "plan": plan.model_dump_json(),
        "seed": str(seed),
        "weights": "random (timing does not depend on weight values)",
    }


def _cpu_name() -> str:
    """The CPU model: `platform` only knows the architecture on Linux, /proc/cpuinfo knows more."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timer(torch: ModuleType, device: Any) -> Callable[[Callable[[], object]], float]:
    """Seconds for one call, measured the way the device allows."""
    if device.type == "cuda":
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)

        def cuda_time(fn: Callable[[], object]) -> float:
            torch.cuda.synchronize(device)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end)) / 1e3

        return cuda_time

    from time import perf_counter

    def cpu_time(fn: Callable[[], object]) -> float:
        t0 = perf_counter()
        fn()
        return perf_counter() - t0

    return cpu_time


def measure(
    model: str | Architecture = "auto",
    plan: SweepPlan | None = None,
    device: DeviceChoice = "auto",
    dtype: DtypeChoice = "auto",
    seed: int = 0,
    progress: bool = True,
    threads: int | None = None,
) -> MeasurementSet:
    """Run the sweep and return the measurements (write them with `csvformat.write_csv`).

    On a CPU, `threads` defaults to 1: a single thread gives repeatable timings on a shared
    machine, where thread pools otherwise collide with whatever else runs. PyTorch's thread
    count is process-wide, so it is restored on the way out.
    """
    torch = require_torch()
    previous = torch.get_num_threads()
    dev = pick_device(torch, device)
    if dev.type == "cpu" or threads is not None:
        torch.set_num_threads(threads or 1)
    try:
        return _measure(torch, dev, model, plan, dtype, seed, progress)
    finally:
        torch.set_num_threads(previous)


def _measure(
    torch: ModuleType,
    dev: Any,
    model: str | Architecture,
    plan: SweepPlan | None,
    dtype: DtypeChoice,
    seed: int,
    progress: bool,
) -> MeasurementSet:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from fluidgate.calibration import decoder

    arch = (
        model
        if isinstance(model, Architecture)
        else architecture(
            model if model != "auto" else ("llama3-8b" if dev.type == "cuda" else "tiny")
        )
    )
    plan = plan or (GPU_PLAN if dev.type == "cuda" else CPU_PLAN)
    torch_dtype = pick_dtype(torch, dev, dtype)
    cache = max(
        s.decodes * (s.context + 1) + (s.prefix + s.chunk if s.chunk else 0) for s in plan.shapes()
    )
    advice = "choose a smaller --model or lower --batch-sizes, --mixed-batches or --context"
    check_memory(torch, dev, arch, torch_dtype, cache, advice)
    clock = timer(torch, dev)
    shapes = plan.shapes()
    times: dict[BatchShape, list[float]] = {shape: [] for shape in shapes}
    per_pass = [len(chunk) for chunk in _split(plan.repeats, plan.passes)]
    with (
        torch.inference_mode(),
        Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            disable=not progress,
            transient=False,
        ) as bar,
    ):
        task = bar.add_task(f"building {arch.name}", total=len(shapes) * len(per_pass))
        try:
            net = decoder.build(arch, dev, torch_dtype, seed)
            bar.update(task, description=f"{arch.name}: warming up")
            _warm(decoder, net, plan, clock, seed)
            for number, repeats in enumerate(per_pass, start=1):
                for shape in shapes:
                    bar.update(
                        task,
                        description=f"{arch.name} pass {number}/{len(per_pass)}:"
                        f" b={shape.decodes} C={shape.chunk}",
                    )
                    times[shape] += _time_shape(
                        decoder, net, shape, plan.warmup, repeats, clock, seed
                    )
                    bar.advance(task)
        except torch.cuda.OutOfMemoryError:
            raise MeasureError(
                f"out of GPU memory for {arch.name}; lower --batch-sizes, --chunks or --context"
            ) from None
    meta = environment(torch, dev, arch, torch_dtype, plan, seed)
    return MeasurementSet(tuple(_row(shape, times[shape]) for shape in shapes), meta)


def check_memory(
    torch: ModuleType, dev: Any, arch: Architecture, dtype: Any, cache_tokens: int, advice: str
) -> None:
    """Refuse up front a model and KV cache that cannot fit, rather than swap a CPU host to a
    standstill; `advice` says which options to change."""
    width = torch.empty((), dtype=dtype).element_size()
    need = arch.parameters * width + cache_tokens * arch.kv_bytes_per_token(width)
    if dev.type == "cuda":
        have = int(torch.cuda.mem_get_info(dev)[0])
        where = "free GPU memory"
    else:
        try:
            have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):  # no sysconf (Windows): cannot tell
            return
        where = "RAM"
    if need > 0.9 * have:
        raise MeasureError(
            f"{arch.name} needs about {need / 2**30:.1f} GiB for weights and KV cache here,"
            f" more than the {have / 2**30:.1f} GiB of {where}; {advice}"
        )


def _split(total: int, parts: int) -> list[range]:
    """`total` timed runs spread as evenly as possible over `parts` passes (none empty)."""
    parts = min(parts, total)
    return [range(total * i // parts, total * (i + 1) // parts) for i in range(parts)]


def _warm(
    decoder: ModuleType,
    net: Any,
    plan: SweepPlan,
    timer: Callable[[Callable[[], object]], float],
    seed: int,
) -> None:
    """Bring clocks, thread pools and the allocator to steady state before the first shape."""
    chunks, decodes = sorted(plan.chunks), sorted(plan.mixed_batches)
    shape = BatchShape(
        decodes[len(decodes) // 2], chunks[len(chunks) // 2], plan.context, plan.prefix
    )
    inputs = decoder.prepare(net, shape, seed)
    spent, runs = 0.0, 0
    while spent < WARM_SECONDS or runs < 3:
        spent += timer(lambda: decoder.step(net, inputs))
        runs += 1


def _time_shape(
    decoder: ModuleType,
    net: Any,
    shape: BatchShape,
    warmup: int,
    repeats: int,
    timer: Callable[[Callable[[], object]], float],
    seed: int,
) -> list[float]:
    inputs = decoder.prepare(net, shape, seed)

    def run() -> object:
        return decoder.step(net, inputs)

    for _ in range(warmup):
        run()
    return [timer(run) for _ in range(repeats)]


def _row(shape: BatchShape, times: list[float]) -> Measurement:
    median, p10, p90, count = summarise(times)
    return Measurement(
        kind=classify(shape.decodes, shape.chunk),
        batch_size=shape.decodes,
        chunk=shape.chunk,
        time_s=median,
        context=shape.context if shape.decodes else None,
        prefix=shape.prefix if shape.chunk else None,
        prefills=1 if shape.chunk else 0,
        p10_s=p10,
        p90_s=p90,
        repeats=count,
        source="fluidgate measure",
    )
