"""NVIDIA Dynamo: a DynamoGraphDeployment with a replica count per role, and the frontend
router's policy config with one entry per class.

Checked against ai-dynamo/dynamo main as stored on 2026-12-02 (runtime images 1.3.0):
`nvidia.com/v1beta1` DynamoGraphDeployment with `spec.components[]` of `name`, `type`
(frontend | worker | prefill | decode | planner | epp), `replicas` and `podTemplate`; workers
run `python3 -m dynamo.vllm --disaggregation-mode prefill|decode`; the frontend reads
`--router-policy-config` YAML with `default_policy_family`, `uncached_isl_buckets` and
`policy_classes` (`name`, `policy_family`, `cache_bucket`, `quantum`). A request names its
class as `policy_class`; an unknown or missing class falls back to the default family.
Dynamo serves the classes' queues by quantum (a share), not by strict priority.
"""

from __future__ import annotations

from typing import Any

from fluidgate.controllers.export import plan, vllm
from fluidgate.controllers.export.base import ExportResult, Target
from fluidgate.controllers.spec import ControllerSpec

STACK = "NVIDIA Dynamo 1.3.0 (DynamoGraphDeployment nvidia.com/v1beta1, vLLM workers)"
SHORT = "Dynamo 1.3.0"
IMAGE = "nvcr.io/nvidia/ai-dynamo/vllm-runtime:1.3.0"
POLICY_PATH = "/etc/fluidgate/router-policy.yaml"
QUANTUM_SCALE = 100  # the largest class's quantum; the others in proportion, at least 1


def quanta(spec: ControllerSpec) -> dict[str, int]:
    """Per-class queue weights ∝ the plan's admitted rate (the admission mix it aims for)."""
    top = max(c.predicted.admitted for c in spec.classes)
    if top <= 0:
        return {c.name: 1 for c in spec.classes}
    return {c.name: max(1, round(QUANTUM_SCALE * c.predicted.admitted / top))
            for c in spec.classes}


def router_policy(spec: ControllerSpec) -> dict[str, Any]:
    q = quanta(spec)
    names = plan.by_rank(spec)
    return {
        "default_policy_family": names[0],
        "uncached_isl_buckets": [{"min_tokens": 0, "bucket": "all"}],
        "policy_classes": [{"name": n, "policy_family": n, "cache_bucket": "all",
                            "quantum": q[n]} for n in names],
    }


def _worker(name: str, kind: str, replicas: int, args: list[str]) -> dict[str, Any]:
    return {
        "name": name, "type": kind, "replicas": replicas,
        "podTemplate": {"spec": {"containers": [{
            "name": "main", "image": IMAGE,
            "command": ["python3", "-m", "dynamo.vllm"],
            "args": ["--model", "MODEL", *args],
            "resources": {"limits": {"nvidia.com/gpu": "1"}},
        }]}},
    }


def graph(spec: ControllerSpec, name: str) -> dict[str, Any]:
    mixed, solo = vllm.pool_args(spec, priority=False, kv=False)
    disaggregated = spec.cluster.solo_gpus > 0
    frontend = {
        "name": "Frontend", "type": "frontend", "replicas": 1,
        "podTemplate": {"spec": {
            "containers": [{
                "name": "main", "image": IMAGE,
                "command": ["python3", "-m", "dynamo.frontend"],
                "args": ["--router-mode", "kv", "--router-policy-config", POLICY_PATH],
                "volumeMounts": [{"name": "router-policy", "mountPath": "/etc/fluidgate"}],
            }],
            "volumes": [{"name": "router-policy", "configMap": {"name": f"{name}-router-policy"}}],
        }},
    }
    components = [frontend]
    if disaggregated:
        components.append(_worker("MixedWorker", "prefill", spec.cluster.mixed_gpus,
                                  ["--disaggregation-mode", "prefill", *mixed]))
        components.append(_worker("SoloWorker", "decode", spec.cluster.solo_gpus,
                                  ["--disaggregation-mode", "decode", *solo]))
    else:
        components.append(_worker("MixedWorker", "worker", spec.cluster.mixed_gpus, mixed))
    return {"apiVersion": "nvidia.com/v1beta1", "kind": "DynamoGraphDeployment",
            "metadata": {"name": name}, "spec": {"components": components}}


def export(spec: ControllerSpec) -> ExportResult:
    name = "fluidgate"
    policy = router_policy(spec)
    config_map = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": f"{name}-router-policy"},
                  "data": {"router-policy.yaml": plan.yaml_text(policy)}}
    unmet = plan.common_unmet(
        spec, "Dynamo's router picks the decode worker by its own cost (KV overlap and "
              "load), the same way for every class",
        None, "the exported queue quanta (shares ∝ the planned admitted rate)")
    lost = plan.mixed_decodes(spec, SHORT, "prefill") if spec.cluster.solo_gpus > 0 else None
    if lost is not None:
        unmet.append(lost)
    q = quanta(spec)
    files = {
        "dynamo.yaml": plan.yaml_text(config_map, graph(spec, name)),
        "router-policy.yaml": plan.yaml_text(policy),
    }
    body = (
        "dynamo.yaml         ConfigMap with the router policy + DynamoGraphDeployment: "
        f"MixedWorker x{spec.cluster.mixed_gpus}"
        + (f", SoloWorker x{spec.cluster.solo_gpus}" if spec.cluster.solo_gpus > 0 else "")
        + "; replace MODEL; kubectl apply -f dynamo.yaml\n"
        "router-policy.yaml  the same policy on its own (python3 -m dynamo.frontend "
        "--router-mode kv --router-policy-config router-policy.yaml)\n"
        "requests name their class as policy_class; quanta: "
        + ", ".join(f"{n} {q[n]}" for n in plan.by_rank(spec)) + "\n"
    )
    files["README.txt"] = plan.readme(spec, STACK, body, unmet)
    return ExportResult(Target.DYNAMO, STACK, files, tuple(unmet))
