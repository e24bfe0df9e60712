"""Named decoder shapes to time: iteration time depends on tensor shapes, not on weight values.

The GPU shapes copy the published configurations of real models (layer count, widths, grouped
KV heads, MLP width, vocabulary), so a random-weight decoder built from them does the same
matrix multiplies and attention reads as the real model. `tiny` and `small` exist so that the
whole pipeline can be exercised on a laptop CPU in seconds.
"""

from __future__ import annotations

import difflib
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Architecture(BaseModel):
    """The shape of a Llama/Qwen-style decoder (RMSNorm, GQA attention with RoPE, SwiGLU)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    hidden: int = Field(gt=0)
    layers: int = Field(gt=0)
    heads: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    intermediate: int = Field(gt=0)
    vocab: int = Field(gt=0)
    rope_theta: float = Field(default=10000.0, gt=0)
    qk_norm: bool = False
    norm_eps: float = 1e-6
    reference: str = ""

    @model_validator(mode="after")
    def _grouping(self) -> Architecture:
        if self.heads % self.kv_heads:
            raise ValueError("heads must be a multiple of kv_heads (grouped-query attention)")
        if self.head_dim % 2:
            raise ValueError("head_dim must be even for rotary embeddings")
        return self

    @property
    def parameters(self) -> int:
        """Weight count, for memory estimates and for the record."""
        attn = self.hidden * (self.heads + 2 * self.kv_heads) * self.head_dim
        attn += self.heads * self.head_dim * self.hidden
        mlp = 3 * self.hidden * self.intermediate
        per_layer = attn + mlp + 2 * self.hidden
        return self.layers * per_layer + 2 * self.vocab * self.hidden + self.hidden

    def kv_bytes_per_token(self, bytes_per_value: int) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * bytes_per_value


ARCHITECTURES: MappingProxyType[str, Architecture] = MappingProxyType(
    {
        a.name: a
        for a in (
            Architecture(
                name="llama3-8b",
                hidden=4096,
                layers=32,
                heads=32,
                kv_heads=8,
                head_dim=128,
                intermediate=14336,
                vocab=128256,
                rope_theta=500000.0,
                norm_eps=1e-5,
                reference="meta-llama/Meta-Llama-3-8B config.json",
            ),
            Architecture(
                name="qwen3-8b",
                hidden=4096,
                layers=36,
                heads=32,
                kv_heads=8,
                head_dim=128,
                intermediate=12288,
                vocab=151936,
                rope_theta=1000000.0,
                qk_norm=True,
                reference="Qwen/Qwen3-8B config.json",
            ),
            Architecture(
                name="qwen3-4b",
                hidden=2560,
                layers=36,
                heads=32,
                kv_heads=8,
                head_dim=128,
                intermediate=9728,
                vocab=151936,
                rope_theta=1000000.0,
                qk_norm=True,
                reference="Qwen/Qwen3-4B config.json",
            ),
            Architecture(
                name="qwen3-0.6b",
                hidden=1024,
                layers=28,
                heads=16,
                kv_heads=8,
                head_dim=128,
                intermediate=3072,
                vocab=151936,
                rope_theta=1000000.0,
                qk_norm=True,
                reference="Qwen/Qwen3-0.6B config.json",
            ),
            Architecture(
                name="small",
                hidden=512,
                layers=6,
                heads=8,
                kv_heads=2,
                head_dim=64,
                intermediate=1408,
                vocab=8192,
                reference="fluidgate CPU smoke shape",
            ),
            Architecture(
                name="tiny",
                hidden=256,
                layers=4,
                heads=8,
                kv_heads=2,
                head_dim=32,
                intermediate=704,
                vocab=4096,
                reference="fluidgate CPU smoke shape",
            ),
        )
    }
)


def architecture(name: str) -> Architecture:
    """Look a shape up by name; a typo gets the closest names suggested."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(ARCHITECTURES), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(
            f"unknown model {name!r}{hint}; known: {', '.join(ARCHITECTURES)}"
        ) from None
