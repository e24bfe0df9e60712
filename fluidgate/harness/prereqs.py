"""What a real-engine harness run needs on this machine: the engine's program and NVIDIA GPUs.

Checked before anything is solved or started, so a missing piece is one clear message that
says what is missing and how to get it (exit 2), never a traceback from a child process
minutes into a run. vLLM is found as its `vllm` console script; SGLang is started the way its
documentation starts it, `python -m sglang.launch_server`, with the Python that its own
`sglang` console script names on its first line (the environment SGLang is installed in,
which need not be fluidgate's). GPUs are those `nvidia-smi -L` lists, narrowed to
`CUDA_VISIBLE_DEVICES` when that is set, so a user can hand the harness a subset.
"""

from __future__ import annotations

import math
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from fluidgate.controllers.export.flags import SGLANG_FLAGS, VLLM_FLAGS
from fluidgate.harness.cli import EngineKind
from fluidgate.harness.launch import RealEngines, gpus_needed
from fluidgate.harness.model_choice import check_model

# the versions whose flags controllers/flags/ holds, so the plan's command lines parse there
VLLM_VERSION = VLLM_FLAGS.removeprefix("vllm-")
SGLANG_VERSION = SGLANG_FLAGS.removeprefix("sglang-")
VLLM_INSTALL = f"pip install vllm=={VLLM_VERSION}"
SGLANG_INSTALL = f"pip install 'sglang[all]=={SGLANG_VERSION}'"
SGLANG_MODULE = "sglang.launch_server"
NVIDIA_SMI_TIMEOUT_S = 30.0


class MissingPrerequisite(Exception):
    """This machine lacks something the run needs; `str()` says what and how to get it."""


def vllm_program() -> list[str]:
    """The argument list that starts a vLLM server, up to the model: `[.../vllm, "serve"]`."""
    path = shutil.which("vllm")
    if path is None:
        raise MissingPrerequisite(
            f"--engine vllm needs vLLM {VLLM_VERSION}, and there is no 'vllm' program on PATH; "
            f"install it with `{VLLM_INSTALL}` (in this environment, or in one whose bin/ "
            "directory is on PATH)")
    return [path, "serve"]


def sglang_program() -> list[str]:
    """The argument list that starts an SGLang server: `[python, "-m", "sglang.launch_server"]`
    with the interpreter SGLang is installed for."""
    script = shutil.which("sglang")
    if script is None:
        raise MissingPrerequisite(
            f"--engine sglang needs SGLang {SGLANG_VERSION}, and there is no 'sglang' program "
            f"on PATH; install it with `{SGLANG_INSTALL}` (in this environment, or in one "
            "whose bin/ directory is on PATH)")
    python = _interpreter(Path(script))
    if python is None:
        raise MissingPrerequisite(
            f"cannot tell which Python runs SGLang: the first line of {script} does not name "
            f"a Python interpreter; reinstall it with `{SGLANG_INSTALL}`")
    return [python, "-m", SGLANG_MODULE]


def _interpreter(script: Path) -> str | None:
    """The Python named by a console script's `#!` line (`#!/usr/bin/env python3` too)."""
    try:
        with script.open("rb") as f:
            first = f.readline(4096).decode(errors="replace")
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    words = shlex.split(first[2:].strip())
    if words and Path(words[0]).name == "env":
        words = [w for w in words[1:] if not w.startswith("-")]
        found = shutil.which(words[0]) if words else None
        words = [found] if found else []
    if not words or not Path(words[0]).name.startswith("python"):
        return None
    return words[0]


def visible_gpus() -> list[str]:
    """The GPUs engines may use, as `CUDA_VISIBLE_DEVICES` values, in order."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        raise MissingPrerequisite(
            "real engines need an NVIDIA GPU, and there is no 'nvidia-smi' on PATH (no NVIDIA "
            "driver here); run on a machine with NVIDIA GPUs and their driver, or use "
            "--engine emulated, which needs no GPU")
    try:
        done = subprocess.run([smi, "-L"], capture_output=True, text=True,
                              timeout=NVIDIA_SMI_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MissingPrerequisite(f"cannot list GPUs: '{smi} -L' failed ({exc})") from None
    listed = [line.split(":", 1)[0].split()[1] for line in done.stdout.splitlines()
              if line.startswith("GPU ") and ":" in line and len(line.split()) > 1]
    if done.returncode != 0 or not listed:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise MissingPrerequisite(
            "real engines need an NVIDIA GPU, and 'nvidia-smi -L' lists none"
            + (f" ({said[0]})" if said else "") + "; use --engine emulated, which needs no GPU")
    chosen = os.environ.get("CUDA_VISIBLE_DEVICES")
    if chosen is None:
        return listed
    ids = [g.strip() for g in chosen.split(",") if g.strip()]
    if not ids:
        raise MissingPrerequisite("CUDA_VISIBLE_DEVICES is set but names no GPU; unset it or "
                                  "list the GPUs the engines may use (e.g. 0,1)")
    return ids


def check_machine(kind: EngineKind, gpus: int, model: str, engines_per_gpu: int,
                  start_timeout: float) -> RealEngines:
    """The engine program and enough GPUs for `gpus` engines, `engines_per_gpu` to a GPU."""
    program = vllm_program() if kind is EngineKind.VLLM else sglang_program()
    found = visible_gpus()
    need = gpus_needed(gpus, engines_per_gpu)
    if need > len(found):
        raise MissingPrerequisite(
            f"--gpus {gpus} at --engines-per-gpu {engines_per_gpu} needs {need} GPUs, and "
            f"{len(found)} are visible ({', '.join(found)}); lower --gpus or raise "
            "--engines-per-gpu")
    return RealEngines(kind, tuple(program), tuple(found), model, engines_per_gpu,
                       start_timeout)


def emulated_model(model: str, time_scale: float) -> None:
    """Check `--engine emulated --model NAME`: a known calibration decoder, PyTorch, and no
    time scale (real passes take the time they take, as `fluidgate engine --model` says)."""
    from fluidgate.calibration.architectures import architecture
    from fluidgate.calibration.measure import MeasureError, require_torch

    if time_scale != 1:
        raise ValueError(f"--time-scale {time_scale:g} cannot apply to real forward passes "
                         "(--engine emulated --model): they take the time they take; leave "
                         "--time-scale at 1")
    architecture(model)  # ValueError naming the known shapes
    try:
        require_torch("--engine emulated --model")
    except MeasureError as exc:
        raise MissingPrerequisite(str(exc)) from None


def real_engines(kind: EngineKind, gpus: int, model: str | None, per_gpu: int,
                 start_timeout: float, time_scale: float) -> RealEngines | None:
    """None for emulated engines; else the checked program, GPUs and choices.

    `ValueError` for an option that does not fit the engine kind, `MissingPrerequisite` for
    what the machine lacks; both say what to do.
    """
    if kind is EngineKind.EMULATED:
        if per_gpu != 1:
            raise ValueError("--engines-per-gpu is for --engine vllm or sglang; emulated "
                             "engines take their timing from the policy")
        if model is not None:
            emulated_model(model, time_scale)
        return None
    if time_scale != 1:
        raise ValueError("--time-scale is for emulated engines; real engines run in real time "
                         "(leave it at 1)")
    if model is None:
        from fluidgate.calibration.architectures import ARCHITECTURES

        raise ValueError(f"--engine {kind.value} needs --model: a model directory, or one of "
                         f"the shapes {', '.join(ARCHITECTURES)} to serve with random weights")
    if per_gpu < 1:
        raise ValueError(f"--engines-per-gpu must be at least 1, not {per_gpu}")
    if not (math.isfinite(start_timeout) and start_timeout > 0):
        raise ValueError(f"--start-timeout must be a positive number, not {start_timeout}")
    check_model(model)
    return check_machine(kind, gpus, model, per_gpu, start_timeout)
