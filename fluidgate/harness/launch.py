"""Command lines for real engines (vLLM, SGLang): one per planned engine, placed on GPUs.

The plan's arguments (batch, chunk, priorities, KV-transfer roles) come from the exporters
(`controllers/export/vllm.py`, `sglang.py`), the same lists `fluidgate export` writes; this
module adds only what a local run needs, each checked against the same flag tables
(`controllers/flags/`): where to listen, which model, how many tokens per streamed chunk, no
prefix cache (identical prompts must not skip their prefill in a timing run), and a share of
GPU memory when several engines share a GPU. Environment per engine: `CUDA_VISIBLE_DEVICES`
(its GPU) and, for vLLM, `VLLM_NIXL_SIDE_CHANNEL_PORT` (each NIXL worker on a host needs its
own handshake port, vLLM's NixlConnector guide). Ports are free loopback ports picked here,
since these servers cannot announce a port the kernel chose for them.
"""

from __future__ import annotations

import itertools
import math
import shlex
import socket
from dataclasses import dataclass

from fluidgate.controllers.export.flags import (
    SGLANG_FLAGS,
    VLLM_FLAGS,
    Flag,
    FlagTable,
    checked,
    load_flag_table,
)
from fluidgate.controllers.spec import ControllerSpec
from fluidgate.harness.bodies import SERVED_NAME
from fluidgate.harness.cli import EngineKind
from fluidgate.harness.model_choice import ModelChoice

HOST = "127.0.0.1"
# Memory the engines of one GPU take together (vLLM's default utilisation is 0.9).
SHARED_GPU_MEMORY = 0.9
# `vllm serve` adds its HTTP server's options (vllm/entrypoints/openai/cli_args.py) to the
# engine arguments that vllm-0.33.0.json lists; these two are all the harness passes.
VLLM_FRONTEND = FlagTable("vllm serve", "0.33.0", "vllm/entrypoints/openai/cli_args.py",
                          "the two frontend options the harness passes",
                          {"--host": Flag(True, None), "--port": Flag(True, None)})


@dataclass(frozen=True)
class RealEngines:
    """What the command line chose and the machine offers, checked before the solve."""

    kind: EngineKind
    program: tuple[str, ...]  # e.g. (".../vllm", "serve")
    gpus: tuple[str, ...]  # CUDA_VISIBLE_DEVICES values available, in order
    model: str  # --model: a directory or a shape name
    engines_per_gpu: int
    start_timeout: float  # wall seconds an engine may take to answer /health


@dataclass(frozen=True)
class EngineProcess:
    """One engine to start: its place in the plan, where it listens, and how to start it."""

    index: int
    role: str  # "mixed" or "solo"
    gpu: str
    port: int
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]  # set on top of the harness's own environment

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def name(self) -> str:
        return f"engine {self.index} ({self.role}, GPU {self.gpu})"

    @property
    def bootstrap_port(self) -> int | None:
        """An SGLang prefill server's KV bootstrap port (None for other engines)."""
        for flag, value in itertools.pairwise(self.argv):
            if flag == "--disaggregation-bootstrap-port":
                return int(value)
        return None

    def command_line(self) -> str:
        """The shell line that starts it by hand: variables, then the program."""
        return " ".join([*(f"{k}={shlex.quote(v)}" for k, v in self.env),
                         *(shlex.quote(a) for a in self.argv)])


class PortPicker:
    """Free loopback ports, none handed out twice in one run."""

    def __init__(self) -> None:
        self._given: set[int] = set()

    def __call__(self) -> int:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((HOST, 0))
                port = int(s.getsockname()[1])
            if port not in self._given:
                self._given.add(port)
                return port


def gpus_needed(engines: int, per_gpu: int) -> int:
    return math.ceil(engines / per_gpu)


def plan_engines(real: RealEngines, spec: ControllerSpec, model: ModelChoice,
                 stream_interval: int, ports: PortPicker | None = None) -> list[EngineProcess]:
    """The engines of `spec` (mixed first, then solo), engine i on GPU `i // engines_per_gpu`."""
    pick = ports or PortPicker()
    roles = ["mixed"] * spec.cluster.mixed_gpus + ["solo"] * spec.cluster.solo_gpus
    k = real.engines_per_gpu
    if gpus_needed(len(roles), k) > len(real.gpus):
        raise ValueError(f"{len(roles)} engines at {k} per GPU need "
                         f"{gpus_needed(len(roles), k)} GPUs; {len(real.gpus)} visible")
    build = _vllm if real.kind is EngineKind.VLLM else _sglang
    mixed_args, solo_args = _pool_args(real.kind, spec)
    out = []
    for i, role in enumerate(roles):
        port = pick()
        plan_args = mixed_args if role == "mixed" else solo_args
        argv, env = build(real, model, plan_args, port, stream_interval, pick)
        out.append(EngineProcess(i, role, real.gpus[i // k], port, tuple(argv),
                                 (("CUDA_VISIBLE_DEVICES", real.gpus[i // k]), *env)))
    return out


def start_waves(engines: list[EngineProcess], per_gpu: int) -> list[list[EngineProcess]]:
    """Engines grouped so that no two of one GPU start together: an engine sizes its memory
    from what is free when it starts, so those sharing a GPU start one after another."""
    return [[e for e in engines if e.index % per_gpu == j] for j in range(per_gpu)]


def _pool_args(kind: EngineKind, spec: ControllerSpec) -> tuple[list[str], list[str]]:
    if kind is EngineKind.VLLM:
        from fluidgate.controllers.export import vllm

        return vllm.pool_args(spec, handoff=True)
    from fluidgate.controllers.export import sglang

    return sglang.pool_args(spec)


def _local(model: ModelChoice, per_gpu: int, stream_interval: int, no_cache: str,
           memory: str) -> list[str]:
    """The arguments a local timing run adds on either stack (their flag names differ)."""
    out = ["--served-model-name", SERVED_NAME, "--stream-interval", str(stream_interval),
           no_cache]
    if model.generated:
        out += ["--load-format", "dummy", "--skip-tokenizer-init"]
    if per_gpu > 1:
        out += [memory, f"{math.floor(100 * SHARED_GPU_MEMORY / per_gpu) / 100:g}"]
    return out


def _offline(model: ModelChoice) -> list[tuple[str, str]]:
    return [("HF_HUB_OFFLINE", "1")] if model.generated else []


def _vllm(real: RealEngines, model: ModelChoice, plan_args: list[str], port: int,
          stream_interval: int, pick: PortPicker) -> tuple[list[str], list[tuple[str, str]]]:
    extra = _local(model, real.engines_per_gpu, stream_interval, "--disable-prefix-caching",
                   "--gpu-memory-utilization")
    frontend = checked(["--host", HOST, "--port", str(port)], VLLM_FRONTEND)
    argv = [*real.program, str(model.path), *frontend, *plan_args,
            *checked(extra, load_flag_table(VLLM_FLAGS))]
    return argv, [("VLLM_NIXL_SIDE_CHANNEL_PORT", str(pick())), *_offline(model)]


def _sglang(real: RealEngines, model: ModelChoice, plan_args: list[str], port: int,
            stream_interval: int, pick: PortPicker) -> tuple[list[str], list[tuple[str, str]]]:
    extra = ["--model-path", str(model.path), "--host", HOST, "--port", str(port),
             *_local(model, real.engines_per_gpu, stream_interval, "--disable-radix-cache",
                     "--mem-fraction-static")]
    if _prefill_server(plan_args):  # it listens for KV bootstrap on a port of its own
        extra += ["--disaggregation-bootstrap-port", str(pick())]
    argv = [*real.program, *checked(extra, load_flag_table(SGLANG_FLAGS)), *plan_args]
    return argv, _offline(model)


def _prefill_server(args: list[str]) -> bool:
    return any(pair == ("--disaggregation-mode", "prefill") for pair in itertools.pairwise(args))
