"""The model real engines serve: a directory the user has, or a generated one with no weights.

Iteration time depends on tensor shapes, not weight values (`calibration/architectures.py`),
so a run needs no download: `--model qwen3-0.6b` writes a Hugging Face `config.json` with that
shape into the run's directory, and the engines start it with random weights
(`--load-format dummy`) and no tokenizer (`--skip-tokenizer-init`, prompts sent as token
ids). The same shape names are the ones `fluidgate calibrate measure --model` times, so a
calibration and a harness run can be of one model. `--model PATH` serves a model directory
as it is (its weights, its tokenizer).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from fluidgate.calibration.architectures import ARCHITECTURES, Architecture, architecture

# Token ids sent for a model given by path, whose vocabulary is not read: every tokenizer of
# a current LLM has at least 32,000 entries, and ids below 100 are often special tokens.
PATH_TOKEN_IDS = (100, 30_000)
CONTEXT_ROUND = 1024  # the generated model's context, rounded up to this many tokens


@dataclass(frozen=True)
class ModelChoice:
    path: Path  # the directory the engines are given
    generated: bool  # True: a written config.json, random weights, no tokenizer
    token_ids: tuple[int, int]  # prompts draw their ids from [low, high)
    label: str  # what the user named: a shape or a directory


class ModelError(ValueError):
    """`--model` names neither a directory nor a known shape; `str()` says so."""


def choose_model(name: str, run_dir: Path, longest: int) -> ModelChoice:
    """The model for `--model name`; a shape's config.json is written under `run_dir/model`.

    `longest` is the longest request (prompt plus output tokens) the run will send, so the
    generated model's context holds it.
    """
    arch = check_model(name)
    if arch is None:
        return ModelChoice(Path(name).expanduser().resolve(), False, PATH_TOKEN_IDS, name)
    target = run_dir / "model"
    target.mkdir(exist_ok=True)
    write_config(arch, target, longest)
    return ModelChoice(target.resolve(), True, (1, arch.vocab), name)


def check_model(name: str) -> Architecture | None:
    """The shape `name` names, None for a model directory; `ModelError` for anything else."""
    given = Path(name).expanduser()
    if given.is_dir():
        return None
    if name not in ARCHITECTURES and ("/" in name or given.exists()):
        raise ModelError(f"--model {name!r} is not a directory (give a model directory, or one "
                         f"of the shapes {', '.join(ARCHITECTURES)} to run with random weights)")
    try:
        return architecture(name)
    except ValueError as exc:
        raise ModelError(f"--model: {exc}; or give a model directory") from None


def hf_config(arch: Architecture, longest: int) -> dict[str, object]:
    """A Hugging Face config for `arch`: Llama's layout, or Qwen3's where it has q/k norms."""
    qwen = arch.qk_norm
    context = CONTEXT_ROUND * math.ceil((longest + 16) / CONTEXT_ROUND)
    return {
        "architectures": ["Qwen3ForCausalLM" if qwen else "LlamaForCausalLM"],
        "model_type": "qwen3" if qwen else "llama",
        "hidden_size": arch.hidden,
        "intermediate_size": arch.intermediate,
        "num_hidden_layers": arch.layers,
        "num_attention_heads": arch.heads,
        "num_key_value_heads": arch.kv_heads,
        "head_dim": arch.head_dim,
        "vocab_size": arch.vocab,
        "max_position_embeddings": context,
        "rope_theta": arch.rope_theta,
        "rms_norm_eps": arch.norm_eps,
        "hidden_act": "silu",
        "attention_bias": False,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "bos_token_id": 1,
        "eos_token_id": 2,
    }


def write_config(arch: Architecture, directory: Path, longest: int) -> Path:
    from fluidgate.atomic import write_output

    path = directory / "config.json"
    write_output(path, json.dumps(hf_config(arch, longest), indent=2) + "\n")
    return path
