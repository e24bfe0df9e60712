"""llm-d: a Deployment per pool with its `llm-d.ai/role` label and replica count, and one
`InferenceObjective` per class carrying its priority.

Checked against llm-d/llm-d-inference-scheduler v0.8.0 (commit 520af47, 2026-05-17):
role label `llm-d.ai/role` with `prefill`, `decode`, `prefill-decode` (`both` deprecated);
the decode filter accepts decode and prefill-decode pods, the prefill filter prefill and
prefill-decode pods — so a mixed GPU is `prefill-decode` and a solo GPU `decode`.
`InferenceObjective` is `inference.networking.x-k8s.io/v1alpha2` with `spec.priority`
(int32, higher served first, 0 when unset) and `spec.poolRef` (group
inference.networking.k8s.io, kind InferencePool, name). Requests pick their objective with
the header `x-gateway-inference-objective: NAME`.
"""

from __future__ import annotations

import re
from typing import Any

from fluidgate.controllers.export import plan, vllm
from fluidgate.controllers.export.base import ExportResult, Target
from fluidgate.controllers.spec import ControllerSpec

STACK = "llm-d (inference scheduler v0.8.0, vLLM 0.33.0 engines)"
IMAGE = "vllm/vllm-openai:v0.33.0"
POOL = "fluidgate"
ROLE = "llm-d.ai/role"


def objective_names(spec: ControllerSpec) -> dict[str, str]:
    """Class name → a DNS-1123 object name, unique (Kubernetes names allow [a-z0-9-])."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for c in spec.classes:
        base = re.sub(r"[^a-z0-9-]+", "-", c.name.lower()).strip("-")[:50] or "class"
        name, k = base, 2
        while name in taken:
            name, k = f"{base}-{k}", k + 1
        taken.add(name)
        out[c.name] = name
    return out


def _deployment(pool: str, role: str, replicas: int, args: list[str]) -> dict[str, Any]:
    labels = {"app": f"{POOL}-{pool}", "llm-d.ai/inferenceServing": "true", ROLE: role}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": f"{POOL}-{pool}", "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                "name": "vllm", "image": IMAGE, "args": ["--model", "MODEL", *args],
                "resources": {"limits": {"nvidia.com/gpu": "1"}},
            }]}},
        },
    }


def export(spec: ControllerSpec) -> ExportResult:
    mixed, solo = vllm.pool_args(spec, priority=False)
    disaggregated = spec.cluster.solo_gpus > 0
    pools = [_deployment("mixed", "prefill-decode", spec.cluster.mixed_gpus, mixed)]
    if disaggregated:
        pools.append(_deployment("solo", "decode", spec.cluster.solo_gpus, solo))
    prio = plan.higher_first(spec)
    names = objective_names(spec)
    objectives = [{
        "apiVersion": "inference.networking.x-k8s.io/v1alpha2", "kind": "InferenceObjective",
        "metadata": {"name": names[c]},
        "spec": {"priority": prio[c], "poolRef": {"group": "inference.networking.k8s.io",
                                                 "kind": "InferencePool", "name": POOL}},
    } for c in plan.by_rank(spec)]
    unmet = plan.common_unmet(
        spec, "llm-d's decode filter accepts decode and prefill-decode pods alike and its "
              "scorers pick one by load and cache, the same way for every class",
        "InferenceObjective priority in llm-d flow control, higher first")
    files = {
        "pools.yaml": plan.yaml_text(*pools),
        "objectives.yaml": plan.yaml_text(*objectives),
    }
    body = (
        f"pools.yaml       Deployments: {POOL}-mixed x{spec.cluster.mixed_gpus} "
        f"({ROLE}: prefill-decode)"
        + (f", {POOL}-solo x{spec.cluster.solo_gpus} ({ROLE}: decode)" if disaggregated else "")
        + "; replace MODEL and select these pods in InferencePool 'fluidgate'\n"
        "objectives.yaml  one InferenceObjective per class; send each request with header "
        "x-gateway-inference-objective: "
        + ", ".join(f"{names[c]} (class {c}, priority {prio[c]})" for c in plan.by_rank(spec))
        + "\n"
    )
    files["README.txt"] = plan.readme(spec, STACK, body, unmet)
    return ExportResult(Target.LLMD, STACK, files, tuple(unmet))
