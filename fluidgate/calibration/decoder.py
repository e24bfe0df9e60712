"""A small random-weight decoder with a real KV cache, written for timing, not for text.

One call to `step` is one serving-engine iteration: the prefill chunk's tokens and one token
per decode stream go through the same projections and MLP as one token batch (that fusion is
what makes a prefill slow its neighbouring decodes), while attention is split: the chunk
attends causally to its cached prefix and to itself, each decode attends to its own cache.
New keys and values are written into the cache exactly as an engine would.

Grouped-query attention is computed without copying keys: the query heads that share a KV
head are folded into the query-length axis, so `scaled_dot_product_attention` sees one KV
head per group. PyTorch is imported inside the functions, so importing this module is free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fluidgate.calibration.architectures import Architecture

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class BatchShape:
    """One iteration: `decodes` streams with `context` cached tokens each, plus a `chunk`."""

    decodes: int
    chunk: int
    context: int
    prefix: int = 0


@dataclass
class Layer:
    attn_norm: torch.Tensor
    qkv: torch.Tensor
    q_norm: torch.Tensor | None
    k_norm: torch.Tensor | None
    o: torch.Tensor
    mlp_norm: torch.Tensor
    gate_up: torch.Tensor
    down: torch.Tensor


@dataclass
class Decoder:
    arch: Architecture
    embed: torch.Tensor
    layers: list[Layer]
    norm: torch.Tensor
    lm_head: torch.Tensor


@dataclass
class StepInputs:
    """Everything an engine prepares on the host before launching the step (not timed)."""

    shape: BatchShape
    tokens: torch.Tensor
    cos: torch.Tensor
    sin: torch.Tensor
    chunk_mask: torch.Tensor | None
    sample_rows: torch.Tensor
    decode_k: list[torch.Tensor]
    decode_v: list[torch.Tensor]
    chunk_k: list[torch.Tensor]
    chunk_v: list[torch.Tensor]


def build(arch: Architecture, device: Any, dtype: Any, seed: int = 0) -> Decoder:
    """Random weights scaled by 1/√fan_in so activations stay finite through every layer."""
    import torch

    gen = torch.Generator(device=device).manual_seed(seed)

    def weight(out_features: int, in_features: int) -> torch.Tensor:
        w = torch.randn(out_features, in_features, generator=gen, device=device, dtype=dtype)
        return w.mul_(in_features**-0.5)

    def ones(n: int) -> torch.Tensor:
        return torch.ones(n, device=device, dtype=dtype)

    a = arch
    qkv_out = (a.heads + 2 * a.kv_heads) * a.head_dim
    layers = [
        Layer(
            attn_norm=ones(a.hidden),
            qkv=weight(qkv_out, a.hidden),
            q_norm=ones(a.head_dim) if a.qk_norm else None,
            k_norm=ones(a.head_dim) if a.qk_norm else None,
            o=weight(a.hidden, a.heads * a.head_dim),
            mlp_norm=ones(a.hidden),
            gate_up=weight(2 * a.intermediate, a.hidden),
            down=weight(a.hidden, a.intermediate),
        )
        for _ in range(a.layers)
    ]
    return Decoder(a, weight(a.vocab, a.hidden), layers, ones(a.hidden), weight(a.vocab, a.hidden))


def prepare(dec: Decoder, shape: BatchShape, seed: int = 0) -> StepInputs:
    """Random token ids and a KV cache filled with noise around `assemble`'s tables."""
    import torch

    a = dec.arch
    device, dtype = dec.embed.device, dec.embed.dtype
    gen = torch.Generator(device="cpu").manual_seed(seed + 1)
    tokens = torch.randint(0, a.vocab, (shape.chunk + shape.decodes,), generator=gen)
    noise = torch.Generator(device=device).manual_seed(seed + 2)

    def cache(batch: int, length: int) -> torch.Tensor:
        return torch.randn(
            batch, a.kv_heads, length, a.head_dim, generator=noise, device=device, dtype=dtype
        )

    def caches(batch: int, length: int) -> list[torch.Tensor]:
        return [cache(batch, length) for _ in range(a.layers)] if batch and length else []

    chunk_len = shape.prefix + shape.chunk
    return assemble(
        dec,
        shape,
        tokens.to(device),
        (caches(shape.decodes, shape.context + 1), caches(shape.decodes, shape.context + 1)),
        (caches(1 if shape.chunk else 0, chunk_len), caches(1 if shape.chunk else 0, chunk_len)),
    )


def assemble(
    dec: Decoder,
    shape: BatchShape,
    tokens: torch.Tensor,
    decode_kv: tuple[list[torch.Tensor], list[torch.Tensor]],
    chunk_kv: tuple[list[torch.Tensor], list[torch.Tensor]],
) -> StepInputs:
    """One iteration's inputs around caches the caller owns: rotary tables, the chunk's
    causal mask and the rows that sample.

    `prepare` fills fresh caches with noise for a timing sweep; the emulated engine's
    `--model` mode passes views of the KV cache it keeps for its whole life. `tokens` holds
    the chunk's ids then one per decode; the caches are per layer, `(decodes, kv_heads,
    context + 1, head_dim)` for the decodes and `(1, kv_heads, prefix + chunk, head_dim)`
    for the chunk (empty lists where there is none).
    """
    import torch

    a = dec.arch
    device, dtype = dec.embed.device, dec.embed.dtype
    n_tokens = shape.chunk + shape.decodes
    positions = torch.cat(
        [
            torch.arange(shape.prefix, shape.prefix + shape.chunk),
            torch.full((shape.decodes,), shape.context),
        ]
    ).to(device=device, dtype=torch.float64)
    inv_freq = a.rope_theta ** (
        -torch.arange(0, a.head_dim, 2, device=device, dtype=torch.float64) / a.head_dim
    )
    angles = positions[:, None] * inv_freq[None, :]
    mask = None
    if shape.chunk:
        keys = torch.arange(shape.prefix + shape.chunk, device=device)
        rows = torch.arange(shape.chunk, device=device)
        base = keys[None, :] <= (shape.prefix + rows)[:, None]
        mask = base.repeat(a.heads // a.kv_heads, 1)
    sample = ([shape.chunk - 1] if shape.chunk else []) + list(range(shape.chunk, n_tokens))
    return StepInputs(
        shape=shape,
        tokens=tokens,
        cos=angles.cos().to(dtype),
        sin=angles.sin().to(dtype),
        chunk_mask=mask,
        sample_rows=torch.tensor(sample, device=device, dtype=torch.long),
        decode_k=decode_kv[0],
        decode_v=decode_kv[1],
        chunk_k=chunk_kv[0],
        chunk_v=chunk_kv[1],
    )


def _rms(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    import torch

    wide = x.to(torch.promote_types(x.dtype, torch.float32))
    scale = torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + eps)
    return (wide * scale).to(x.dtype) * weight


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    import torch

    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    c, s = cos[:, None, :], sin[:, None, :]
    return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)


def step(dec: Decoder, inp: StepInputs) -> torch.Tensor:
    """One engine iteration; returns the greedy next token of every sequence that samples."""
    return forward(dec, inp).argmax(dim=-1)


def forward(dec: Decoder, inp: StepInputs) -> torch.Tensor:
    """Logits of the chunk's last token (if any) and of every decode stream, in that order."""
    import torch
    from torch.nn import functional as F

    a, shape = dec.arch, inp.shape
    n_c, n_d, pre, ctx = shape.chunk, shape.decodes, shape.prefix, shape.context
    group, hd, kvh = a.heads // a.kv_heads, a.head_dim, a.kv_heads
    x = F.embedding(inp.tokens, dec.embed)
    for i, layer in enumerate(dec.layers):
        h = _rms(x, layer.attn_norm, a.norm_eps)
        q, k, v = torch.split(F.linear(h, layer.qkv), [a.heads * hd, kvh * hd, kvh * hd], -1)
        q = q.reshape(-1, a.heads, hd)
        k = k.reshape(-1, kvh, hd)
        v = v.reshape(-1, kvh, hd)
        if layer.q_norm is not None and layer.k_norm is not None:
            q, k = _rms(q, layer.q_norm, a.norm_eps), _rms(k, layer.k_norm, a.norm_eps)
        q, k = _rope(q, inp.cos, inp.sin), _rope(k, inp.cos, inp.sin)
        parts = []
        if n_c:
            kc, vc = inp.chunk_k[i], inp.chunk_v[i]
            kc[0, :, pre : pre + n_c] = k[:n_c].transpose(0, 1)
            vc[0, :, pre : pre + n_c] = v[:n_c].transpose(0, 1)
            qc = q[:n_c].reshape(n_c, kvh, group, hd).permute(1, 2, 0, 3)
            qc = qc.reshape(1, kvh, group * n_c, hd)
            oc = F.scaled_dot_product_attention(qc, kc, vc, attn_mask=inp.chunk_mask)
            parts.append(oc.reshape(kvh, group, n_c, hd).permute(2, 0, 1, 3).reshape(n_c, -1))
        if n_d:
            kd, vd = inp.decode_k[i], inp.decode_v[i]
            kd[:, :, ctx] = k[n_c:]
            vd[:, :, ctx] = v[n_c:]
            qd = q[n_c:].reshape(n_d, kvh, group, hd)
            od = F.scaled_dot_product_attention(qd, kd, vd)
            parts.append(od.reshape(n_d, -1))
        attn = parts[0] if len(parts) == 1 else torch.cat(parts)
        x = x + F.linear(attn, layer.o)
        gate, up = F.linear(_rms(x, layer.mlp_norm, a.norm_eps), layer.gate_up).chunk(2, dim=-1)
        x = x + F.linear(F.silu(gate) * up, layer.down)
    return F.linear(_rms(x[inp.sample_rows], dec.norm, a.norm_eps), dec.lm_head)
