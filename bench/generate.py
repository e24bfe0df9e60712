"""Seeded, realistic policies of any size, as `.sli` text and as the numbers behind it.

A generated policy has K classes whose prompt and output lengths are drawn from ranges like
the Dolly-15k categories and the ShareGPT conversations (`shared/data/README.md`), patience
between 5 and 120 s, bundled pricing with a premium on some classes, and arrival rates
scaled so the cluster is loaded at `load` times its nominal capacity (the capacity at which
every class could be served in full). The cluster is the reference one of
`examples/two_class.sli` (Qwen-8B-like iteration times, B = 16, C = 256).

Every number is rounded *before* it is written, and the rounded value is what the spec
keeps: the text and the spec describe exactly the same LP, so an independent solver
(`bench/floor.py`) can be checked against fluidgate to 1e-6.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Literal

SloKind = Literal["ttft", "abandonment", "tpot", "wait", "served"]
SLO_KINDS: tuple[SloKind, ...] = ("ttft", "abandonment", "tpot", "wait", "served")


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    """Cluster constants in the units the text uses (ms, tokens)."""

    gpus: int = 500
    max_batch: int = 16
    chunk: int = 256
    mixed_ms: float = 17.4  # α in ms
    mixed_ms_per_token: float = 0.062  # β in ms per chunk token
    solo_ms: float = 22.0

    @property
    def tau(self) -> float:
        """Mixed iteration time in seconds."""
        return self.mixed_ms * 1e-3 + self.mixed_ms_per_token * 1e-3 * self.chunk

    @property
    def gamma(self) -> float:
        return 1.0 / (self.solo_ms * 1e-3)


@dataclass(frozen=True, slots=True)
class ClassSpec:
    name: str
    rate: float  # requests/s per GPU
    prompt: int  # tokens
    output: int  # tokens
    patience: float  # s
    price_input: float | None = None  # per Mtok; None: the cluster's pricing
    price_output: float | None = None


@dataclass(frozen=True, slots=True)
class SloSpec:
    """One per-class SLO. `bound` is in the unit it is written with (see `slo_line`)."""

    kind: SloKind
    cls: int
    bound: float


@dataclass(frozen=True)
class PolicySpec:
    name: str
    cluster: ClusterSpec
    price_input: float  # per Mtok
    price_output: float  # per Mtok
    classes: list[ClassSpec]
    slos: list[SloSpec] = field(default_factory=list)
    seed: int = 0
    load: float = 1.0

    def text(self) -> str:
        return policy_text(self)


def _num(v: float) -> str:
    """Shortest text that reads back as exactly `v`."""
    return repr(float(v)) if not float(v).is_integer() else str(int(v))


def _round_sig(v: float, digits: int = 6) -> float:
    return float(f"{v:.{digits}g}")


def _log_uniform(rng: random.Random, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def _lengths(rng: random.Random) -> tuple[int, int]:
    """(prompt, output) tokens: half Dolly-like, half ShareGPT-like."""
    if rng.random() < 0.5:  # Dolly-15k categories: prompts 45-1,177, outputs 142-915 on average
        return round(_log_uniform(rng, 40, 1200)), round(_log_uniform(rng, 140, 920))
    # ShareGPT (Llama-2 tokenizer): prompt median 1,730 (5-95 %: 29-6,563), output median 415
    prompt = min(7000, max(30, round(rng.lognormvariate(math.log(1730), 1.0))))
    output = min(1000, max(40, round(rng.lognormvariate(math.log(415), 0.7))))
    return prompt, output


def nominal_capacity(cluster: ClusterSpec, shares: list[float], prompts: list[int],
                     outputs: list[int]) -> float:
    """Requests/s per GPU at which serving every class in full uses all decode capacity.

    With total rate s split by `shares`, prefill needs a mixed share X = s·Σr·P·τ/C, and
    decode needs s·Σr·D tokens/s from (B−1)·X slots at 1/τ and B·(1−X) slots at γ.
    """
    B, C, tau, gamma = cluster.max_batch, cluster.chunk, cluster.tau, cluster.gamma
    p_bar = sum(r * p for r, p in zip(shares, prompts, strict=True))
    d_bar = sum(r * d for r, d in zip(shares, outputs, strict=True))
    return B * gamma / (d_bar + p_bar * (B * gamma * tau - B + 1) / C)


def generate(classes: int, seed: int = 0, slos: bool = False, load: float = 1.05) -> PolicySpec:
    """A policy with `classes` classes; with `slos`, one SLO per class (five shapes)."""
    if classes < 1:
        raise ValueError("a policy needs at least one class")
    rng = random.Random(seed * 1_000_003 + classes)
    cluster = ClusterSpec()
    lengths = [_lengths(rng) for _ in range(classes)]
    popularity = [rng.lognormvariate(0.0, 1.0) for _ in range(classes)]
    total = sum(popularity)
    shares = [w / total for w in popularity]
    prompts = [p for p, _ in lengths]
    outputs = [d for _, d in lengths]
    per_gpu = load * nominal_capacity(cluster, shares, prompts, outputs)
    specs: list[ClassSpec] = []
    for k in range(classes):
        premium = rng.random() < 0.2
        specs.append(ClassSpec(
            name=f"c{k}",
            rate=_round_sig(per_gpu * shares[k]),
            prompt=prompts[k],
            output=outputs[k],
            patience=float(rng.randint(10, 240)) / 2.0,  # 5 to 120 s in half seconds
            price_input=round(rng.uniform(0.2, 0.5), 2) if premium else None,
            price_output=round(rng.uniform(0.8, 2.0), 2) if premium else None,
        ))
    slo_specs = [_slo_for(rng, cluster, k, specs[k]) for k in range(classes)] if slos else []
    return PolicySpec(
        name=f"generated K={classes} seed={seed}" + (" with SLOs" if slos else ""),
        cluster=cluster, price_input=0.15, price_output=0.60, classes=specs, slos=slo_specs,
        seed=seed, load=load,
    )


def _slo_for(rng: random.Random, cluster: ClusterSpec, k: int, cls: ClassSpec) -> SloSpec:
    """A feasible SLO for class k, cycling through the five shapes with distinct bounds."""
    kind = SLO_KINDS[k % len(SLO_KINDS)]
    if kind == "ttft":  # seconds; never below the class's own prefill time
        prefill = cls.prompt * cluster.tau / cluster.chunk
        return SloSpec(kind, k, round(prefill + rng.uniform(0.5, 5.0), 3))
    if kind == "abandonment":  # percent
        return SloSpec(kind, k, round(rng.uniform(5.0, 40.0), 1))
    if kind == "tpot":  # ms, between a solo (22 ms) and a mixed (33.3 ms) iteration
        return SloSpec(kind, k, round(rng.uniform(24.0, 32.0), 2))
    if kind == "wait":  # ms
        return SloSpec(kind, k, float(rng.randrange(200, 3000, 10)))
    return SloSpec(kind, k, round(rng.uniform(0.5, 0.9), 3))  # served ≥ share of arrivals


def slo_line(slo: SloSpec) -> str:
    c = f"c{slo.cls}"
    b = _num(slo.bound)
    return {
        "ttft": f"ttft({c}) <= {b} s",
        "abandonment": f"abandonment({c}) <= {b} %",
        "tpot": f"tpot({c}) <= {b} ms",
        "wait": f"wait({c}) <= {b} ms",
        "served": f"served({c}) >= {b} * rate({c})",
    }[slo.kind]


def policy_text(spec: PolicySpec, table: bool = False) -> str:
    """The policy as `.sli` text; with `table`, its classes come from `class_table(spec)`,
    to be written next to it as `TABLE_FILE`."""
    c = spec.cluster
    lines = [
        f"# Generated by bench/generate.py: {len(spec.classes)} classes, seed {spec.seed},",
        f"# arrivals at {spec.load:g}x the nominal capacity.",
        f'policy "{spec.name}"',
        "",
        "cluster {",
        f"    gpus      = {c.gpus}",
        f"    max_batch = {c.max_batch}",
        f"    chunk     = {c.chunk} tokens",
        "    iteration {",
        f"        mixed = {_num(c.mixed_ms)} ms + {_num(c.mixed_ms_per_token)} ms/token * chunk",
        f"        solo  = {_num(c.solo_ms)} ms",
        "    }",
        "}",
        "",
        "pricing bundled {",
        f"    input  = {_num(spec.price_input)} per Mtok",
        f"    output = {_num(spec.price_output)} per Mtok",
        "}",
        "",
    ]
    if table:
        lines.append(f'classes from "{TABLE_FILE}"')
    for cls in spec.classes if not table else ():
        body = (f"rate = {_num(cls.rate)} /s per gpu; prompt = {cls.prompt} tokens; "
                f"output = {cls.output} tokens; patience = {_num(cls.patience)} s")
        if cls.price_input is not None and cls.price_output is not None:
            body += (f"; price {{ input = {_num(cls.price_input)} per Mtok; "
                     f"output = {_num(cls.price_output)} per Mtok }}")
        lines.append(f"class {cls.name} {{ {body} }}")
    lines += ["", "objective maximize revenue"]
    if spec.slos:
        lines += ["", "slo {"]
        lines += [f"    {slo_line(s)}" for s in spec.slos]
        lines.append("}")
    return "\n".join(lines) + "\n"


TABLE_FILE = "classes.csv"


def class_table(spec: PolicySpec) -> str:
    """The classes as a `classes from` table (CSV). Every class gets explicit prices: the
    cluster's where the spec has none, the same numbers the inline text implies."""
    rows = ["name,rate[/s per gpu],prompt[tokens],output[tokens],patience[s],"
            "price_input[per Mtok],price_output[per Mtok]"]
    for cls in spec.classes:
        pin = spec.price_input if cls.price_input is None else cls.price_input
        pout = spec.price_output if cls.price_output is None else cls.price_output
        rows.append(f"{cls.name},{_num(cls.rate)},{cls.prompt},{cls.output},"
                    f"{_num(cls.patience)},{_num(pin)},{_num(pout)}")
    return "\n".join(rows) + "\n"
