"""What every stack's export reads from the spec: pools, priorities, and the rules no
engine flag can carry (decode placement, the admission gate, per-class admission targets).

Kept in one place so the stacks agree on numbers and on the words used for what they lose.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from typing import Any

from fluidgate.controllers.export.base import ExportError, Unmet
from fluidgate.controllers.spec import ControllerSpec, GateRule, RouterRule

# Shares below this are solver round-off, not a plan to route or shed (LP tolerances ~1e-9).
_EPS = 1e-6


def whole_chunk(spec: ControllerSpec) -> int:
    """C as the integer token count engines take; a fractional C cannot be configured."""
    chunk = spec.cluster.chunk
    if chunk != int(chunk):
        raise ExportError(f"cluster.chunk is {chunk} tokens; serving stacks take a whole "
                          "number of prefill tokens per iteration")
    return int(chunk)


def by_rank(spec: ControllerSpec) -> list[str]:
    """Class names, the one admitted first (rank 1) first."""
    return [c.name for c in sorted(spec.classes, key=lambda c: c.priority)]


def lower_first(spec: ControllerSpec) -> dict[str, int]:
    """Priorities for a stack that runs lower values first: rank r → r − K − 1.

    All negative, so requests that carry no priority (0 by default) queue behind every
    planned class rather than ahead of it.
    """
    k = len(spec.classes)
    return {c.name: c.priority - k - 1 for c in spec.classes}


def higher_first(spec: ControllerSpec) -> dict[str, int]:
    """Priorities for a stack that runs higher values first: rank r → K + 1 − r (≥ 1)."""
    k = len(spec.classes)
    return {c.name: k + 1 - c.priority for c in spec.classes}


def decode_placement(spec: ControllerSpec, how_stack_places: str) -> Unmet:
    split = ", ".join(f"{c.name} {c.p_solo:.4f}" for c in spec.classes)
    if spec.router is RouterRule.SLI_SPLIT:
        rule = ("per-class probabilistic routing between pools: send class i's decode to the "
                f"solo pool with probability p_solo ({split}), else to the mixed pool, each "
                "pool with its own buffer")
    else:
        rule = ("solo-first decode placement: a finished prefill's decode goes to a free solo "
                "slot, else a free mixed slot, else one FCFS buffer (planned solo shares: "
                f"{split})")
    return Unmet(rule, how_stack_places)


def admission_gate(spec: ControllerSpec, native_priority: str | None,
                   approximation: str | None = None) -> Unmet | None:
    """The gate as an unmet rule, or None when the stack's strict priority is the gate.

    `native_priority` names the stack's strict per-class priority, if it has one;
    `approximation` names what the export uses instead when it has not.
    """
    order = " > ".join(by_rank(spec))
    approx = approximation or (f"the exported static priorities ({native_priority}, order "
                               f"{order})" if native_priority else None)
    if spec.gate is GateRule.STATIC_PRIORITY:
        if native_priority is not None:
            return None
        detail = "the stack has no strict per-class priority for admission"
        if approx:
            detail += f"; {approx} only approximate it"
        return Unmet("static-priority admission gate: a free prefill slot takes the waiting "
                     f"class first in the order {order}", detail)
    targets = ", ".join(f"{c.name} {c.targets.prefill:.2f}" for c in spec.classes)
    detail = ("engines schedule each queue by a fixed rule; none compares running prefills "
              "per class with a target")
    if approx:
        detail += f"; {approx} only approximate it"
    return Unmet("occupancy-deficit admission gate: a free prefill slot admits the waiting "
                 "class with the smallest (X_i − n·x_i*)/x_i*, where X_i counts its running "
                 f"prefills and n·x_i* is its target ({targets} GPUs)", detail)


def admission_targets(spec: ControllerSpec) -> Unmet | None:
    """Classes the plan admits only in part (the rest wait and abandon by design)."""
    partial = [c for c in spec.classes if c.predicted.arrivals - c.predicted.admitted
               > _EPS * max(1.0, c.predicted.arrivals)]
    if not partial:
        return None
    rates = ", ".join(f"{c.name} {c.predicted.admitted:.2f} of {c.predicted.arrivals:.2f} req/s"
                      for c in partial)
    return Unmet(f"per-class admission gates: the plan admits only part of some classes ({rates})"
                 " and holds the rest in their prefill queues until they are admitted or leave",
                 "engines admit whatever reaches them; none holds a class back to a planned rate")


def common_unmet(spec: ControllerSpec, placement: str, native_priority: str | None,
                 approximation: str | None = None) -> list[Unmet]:
    out = [decode_placement(spec, placement)]
    gate = admission_gate(spec, native_priority, approximation)
    if gate is not None:
        out.append(gate)
    targets = admission_targets(spec)
    if targets is not None:
        out.append(targets)
    return out


def mixed_decodes(spec: ControllerSpec, stack: str, mode: str) -> Unmet | None:
    """Stacks whose prefill workers cannot also decode lose the plan's mixed-pool decodes."""
    planned = sum(c.targets.decodes_mixed for c in spec.classes)
    if planned <= _EPS:
        return None
    return Unmet(f"decodes on mixed GPUs: the plan keeps {planned:.1f} decodes running on the "
                 f"{spec.cluster.mixed_gpus} mixed GPUs next to their prefills",
                 f"{stack} workers in {mode} mode only prefill; those decodes must fit in the "
                 f"{spec.cluster.solo_gpus} decode-only GPUs, which the plan already fills",
                 "export for vLLM (--target vllm), whose kv_producer engines also finish "
                 "decodes locally, or add decode GPUs")


def args_file(args: Sequence[str]) -> str:
    """One flag and its values per line, shell-quoted (`xargs -a FILE cmd ...` reads it)."""
    lines: list[list[str]] = []
    for token in args:
        if token.startswith("--") or not lines:
            lines.append([token])
        else:
            lines[-1].append(token)
    return "".join(" ".join(shlex.quote(t) for t in line) + "\n" for line in lines)


def yaml_text(*docs: object) -> str:
    """Kubernetes-style YAML: no anchors/aliases, multi-line strings as literal blocks."""
    import yaml

    class _Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def json_text(payload: object) -> str:
    return json.dumps(payload, indent=2, ensure_ascii=False) + "\n"


def readme(spec: ControllerSpec, stack: str, body: str, unmet: Sequence[Unmet]) -> str:
    head = (f"fluidgate export for {stack}\n"
            f"plan: {spec.policy.name} ({spec.policy.path}, sha256 {spec.policy.sha256[:12]}…), "
            f"{spec.generator}\n"
            f"cluster: {spec.cluster.gpus} GPUs = {spec.cluster.mixed_gpus} mixed + "
            f"{spec.cluster.solo_gpus} decode-only (solo); B = {spec.cluster.max_batch}, "
            f"C = {spec.cluster.chunk:g} tokens\n\n")
    if unmet:
        tail = (f"\nNOT EXPRESSED BY THIS STACK ({len(unmet)}): the plan's R* assumes these "
                "rules; without them\nexpect less\n"
                + "\n".join(u.render() for u in unmet) + "\n")
    else:
        tail = f"\nEvery rule of the plan is expressed natively by {stack}.\n"
    return head + body.rstrip("\n") + "\n" + tail

