"""vLLM 0.33.0: `vllm serve` arguments for the mixed and the decode-only pool, and the
per-request `priority` of each class.

Facts checked in the 0.33.0 wheel: `SchedulerConfig.policy = "priority"` runs lower
`priority` values first, ties by arrival (vllm/config/scheduler.py); the request field
`priority` defaults to 0 (entrypoints/openai/*/protocol.py); NixlConnector takes
`kv_role` `kv_producer` on prefill instances and `kv_consumer` on decode instances
(`kv_both` is deprecated there); a producer engine still finishes requests that do not ask
for remote decode, which is what a mixed GPU does.
"""

from __future__ import annotations

import json

from fluidgate.controllers.export import plan
from fluidgate.controllers.export.base import ExportResult, Target
from fluidgate.controllers.export.flags import VLLM_FLAGS, checked, load_flag_table
from fluidgate.controllers.spec import ControllerSpec

STACK = "vLLM 0.33.0"
CONNECTOR = "NixlConnector"


def _kv(role: str) -> str:
    return json.dumps({"kv_connector": CONNECTOR, "kv_role": role}, separators=(",", ":"))


def pool_args(spec: ControllerSpec, *, priority: bool = True, kv: bool = True,
              handoff: bool = False) -> tuple[list[str], list[str]]:
    """(mixed, solo) engine arguments.

    `priority=False` leaves queue order to something in front of the engines (llm-d's flow
    control); `kv=False` leaves the KV connector to a framework that sets its own (Dynamo);
    `handoff=True` gives mixed engines the connector even without a solo pool, for a front
    (fluidgate's gateway) that runs every request's prefill and decode as two steps that may
    land on two mixed engines.
    """
    b, c = spec.cluster.max_batch, plan.whole_chunk(spec)
    disaggregated = spec.cluster.solo_gpus > 0 or handoff
    # One prefill of at most C tokens plus up to B − 1 one-token decodes per iteration.
    mixed = ["--max-num-seqs", str(b), "--enable-chunked-prefill",
             "--max-num-batched-tokens", str(c + b), "--long-prefill-token-threshold", str(c)]
    solo = ["--max-num-seqs", str(b)]
    if priority:
        mixed += ["--scheduling-policy", "priority"]
        solo += ["--scheduling-policy", "priority"]
    if disaggregated and kv:
        mixed += ["--kv-transfer-config", _kv("kv_producer")]
        solo += ["--kv-transfer-config", _kv("kv_consumer")]
    table = load_flag_table(VLLM_FLAGS)
    return checked(mixed, table), checked(solo, table)


def export(spec: ControllerSpec) -> ExportResult:
    mixed, solo = pool_args(spec)
    prio = plan.lower_first(spec)
    unmet = plan.common_unmet(
        spec,
        "vLLM decides nothing across engines: whoever sends a request to a mixed engine "
        "chooses, per request, whether it asks for remote decode (kv_transfer_params "
        "do_remote_decode) and which decode engine receives it",
        "vLLM request priority, lower first")
    files: dict[str, str] = {"mixed.args": plan.args_file(mixed)}
    if spec.cluster.solo_gpus > 0:
        files["solo.args"] = plan.args_file(solo)
    files["pools.json"] = plan.json_text({
        "stack": STACK,
        "mixed": {"replicas": spec.cluster.mixed_gpus, "args": "mixed.args"},
        "solo": {"replicas": spec.cluster.solo_gpus,
                 "args": "solo.args" if spec.cluster.solo_gpus > 0 else None},
    })
    files["priorities.json"] = plan.json_text({
        "stack": STACK,
        "field": "priority",
        "order": "lower value runs first (requests without one get 0, after every class)",
        "classes": {name: prio[name] for name in plan.by_rank(spec)},
    })
    body = (
        f"mixed.args   {spec.cluster.mixed_gpus} engines (one per mixed GPU): "
        "xargs -a mixed.args vllm serve MODEL\n"
        + (f"solo.args    {spec.cluster.solo_gpus} engines (one per decode-only GPU): "
           "xargs -a solo.args vllm serve MODEL\n" if spec.cluster.solo_gpus > 0 else "")
        + "priorities.json  set each request's \"priority\" to its class's value\n"
        "pools.json   replica counts per pool\n"
    )
    files["README.txt"] = plan.readme(spec, STACK, body, unmet)
    return ExportResult(Target.VLLM, STACK, files, tuple(unmet))
