"""Extreme but valid policies, spread over the documented ranges, from a seed.

Each case is the policy text (what a user writes) and the same policy as a `fractions.Spec`
(what the independent formulation solves). Values are drawn log-uniformly, half the time
over a field's whole accepted range and half the time near typical values, so that the
cases mix extremes with ordinary neighbours (which is where the solver's cut-offs bite).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from tests.fractions import Klass, Spec

# the accepted ranges of docs/language.md (per GPU for rates, per token for prices)
RANGES = {
    "gpus": (1, 1e7), "max_batch": (2, 1e6), "chunk": (1, 1e7), "tokens": (1, 1e8),
    "patience": (1e-3, 1e9), "rate": (1e-9, 1e7), "solo": (1e-6, 3600),
    "alpha": (1e-6, 3600), "price": (1e-12, 1e6), "request": (1e-12, 1e12),
    "penalty": (1e-9, 1e9), "weight": (1e-6, 1e6),
}
TYPICAL = {
    "gpus": (1, 1000), "max_batch": (8, 256), "chunk": (64, 4096), "tokens": (50, 10000),
    "patience": (1, 100), "rate": (0.01, 10), "solo": (5e-3, 0.1), "alpha": (5e-3, 0.1),
    "price": (1e-7, 1e-3), "request": (1e-4, 1.0), "penalty": (1.0, 1e3),
    "weight": (0.5, 2.0),
}


@dataclass
class Case:
    seed: int
    text: str
    spec: Spec


def _draw(rng: random.Random, key: str) -> float:
    lo, hi = RANGES[key] if rng.random() < 0.5 else TYPICAL[key]
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def _num(v: float) -> str:
    return repr(float(v))


def _price(rng: random.Random, tokens: float) -> tuple[str, float]:
    """A price as written (per token, per Mtok or per request) and its value per token."""
    if rng.random() < 0.08:
        return "0 per token", 0.0
    per_token = _draw(rng, "price")
    form = rng.random()
    if form < 0.25:
        written = per_token * 1e6
        return f"{_num(written)} per Mtok", written * 1e-6
    if form < 0.5:
        written = _draw(rng, "request")
        return f"{_num(written)} per request", written / tokens
    return f"{_num(per_token)} per token", per_token


def make_case(seed: int) -> Case:
    rng = random.Random(seed)
    gpus = round(_draw(rng, "gpus"))
    B = round(_draw(rng, "max_batch"))
    C = round(_draw(rng, "chunk"))
    alpha = _draw(rng, "alpha")
    beta = 0.0 if rng.random() < 0.3 else alpha / C * rng.uniform(0.1, 3)
    beta = min(beta, 1.0)
    solo = _draw(rng, "solo")
    pricing = "bundled" if rng.random() < 0.5 else "separate"
    classes: list[Klass] = []
    lines = [f'policy "extreme {seed}"', "cluster {", f"    gpus = {gpus}",
             f"    max_batch = {B}", f"    chunk = {C} tokens", "    iteration {",
             f"        mixed = {_num(alpha)} s + {_num(beta)} s/token * chunk",
             f"        solo = {_num(solo)} s", "    }", "}", f"pricing {pricing} {{",
             "    input = 0 per token", "    output = 0 per token", "}"]
    for k in range(rng.randint(1, 3)):
        rate = _draw(rng, "rate")
        prompt = round(_draw(rng, "tokens"))
        output = round(_draw(rng, "tokens"))
        patience = None if rng.random() < 0.3 else _draw(rng, "patience")
        cin_text, cin = _price(rng, prompt)
        cout_text, cout = _price(rng, output)
        weight = _draw(rng, "weight")
        classes.append(Klass(rate, prompt, output, patience, cin, cout, weight))
        lines += [f"class c{k} {{", f"    rate = {_num(rate)} /s per gpu",
                  f"    weight = {_num(weight)}",
                  f"    prompt = {prompt} tokens", f"    output = {output} tokens",
                  "    patience = " + ("none" if patience is None else f"{_num(patience)} s"),
                  f"    price {{ input = {cin_text}; output = {cout_text} }}", "}"]
    spec = Spec(gpus, B, C, alpha, beta, solo, classes, pricing)
    slos = _slos(rng, spec) if rng.random() < 0.35 else []
    if rng.random() < 0.15:
        spec.objective = rng.choice(["throughput", "served"])
        lines.append(f"objective maximize {spec.objective}")
    if slos:
        lines += ["slo {", *(f"    {s}" for s in slos), "}"]
    return Case(seed, "\n".join(lines) + "\n", spec)


def _slos(rng: random.Random, spec: Spec) -> list[str]:
    out: list[str] = []
    tau = spec.alpha + spec.beta * spec.C
    if rng.random() < 0.5:
        spec.abandonment_max = rng.uniform(0.01, 0.5)
        text = f"abandonment(all) <= {_num(spec.abandonment_max * 100)} %"
        if rng.random() < 0.5:
            spec.abandonment_penalty = _draw(rng, "penalty")
            text = f"soft {text} penalty {_num(spec.abandonment_penalty)}"
        out.append(text)
    if rng.random() < 0.4:
        floor = max(c.prompt * tau / spec.C for c in spec.classes)
        spec.ttft_max = floor * math.exp(rng.uniform(0.0, math.log(100)))
        out.append(f"ttft(all) <= {_num(spec.ttft_max)} s")
    if rng.random() < 0.3:
        k0 = spec.classes[0]
        spec.served_min = spec.gpus * k0.rate * rng.uniform(0.05, 1.0)
        out.append(f"served(c0) >= {_num(spec.served_min)} /s")
    if rng.random() < 0.25 and len(spec.classes) > 1:
        spec.spread_prefill_max = math.exp(rng.uniform(math.log(1e-6), math.log(0.5)))
        out.append(f"spread(prefill) <= {_num(spec.spread_prefill_max)}")
    if rng.random() < 0.3:
        lo, hi = spec.tau_solo, max(tau, spec.tau_solo) * 2
        spec.tpot_max = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        out.append(f"tpot <= {_num(spec.tpot_max)} s")
    return out
