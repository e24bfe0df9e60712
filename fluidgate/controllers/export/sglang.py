"""SGLang 0.5.23: server arguments for both pools, the PD router's prefill/decode lists
(sglang-router 0.3.2), and each class's request `priority`.

Facts checked in the 0.5.23 wheel: with `--enable-priority-scheduling` waiting requests
sort by `priority * priority_sign`, where `priority_sign = -1` unless
`--schedule-low-priority-values-first`, so higher values run first
(srt/managers/schedule_policy.py); `--default-priority-value` fills in requests that carry
none (srt/managers/tokenizer_manager.py); `--disaggregation-mode` is null, prefill or decode,
and a prefill-mode server only prefills; prefill servers listen for KV bootstrap on 8998 by
default. Router facts from sglang_router/router_args.py: `--pd-disaggregation`,
`--prefill URL [BOOTSTRAP_PORT]` and `--decode URL`, each repeated per server.
"""

from __future__ import annotations

from fluidgate.controllers.export import plan
from fluidgate.controllers.export.base import ExportResult, Target
from fluidgate.controllers.export.flags import (
    SGLANG_FLAGS,
    SGLANG_ROUTER_FLAGS,
    checked,
    load_flag_table,
)
from fluidgate.controllers.spec import ControllerSpec

STACK = "SGLang 0.5.23"
ROUTER = "sglang-router 0.3.2"
PORT, BOOTSTRAP_PORT = 30000, 8998  # the servers' defaults in 0.5.23


def pool_args(spec: ControllerSpec) -> tuple[list[str], list[str]]:
    b, c = spec.cluster.max_batch, plan.whole_chunk(spec)
    # Requests without a priority get 0: below every class (all ≥ 1), so they run last.
    prio = ["--enable-priority-scheduling", "--default-priority-value", "0"]
    mixed = ["--chunked-prefill-size", str(c), "--max-running-requests", str(b), *prio]
    solo = ["--max-running-requests", str(b), *prio]
    if spec.cluster.solo_gpus > 0:
        mixed = ["--disaggregation-mode", "prefill", *mixed]
        solo = ["--disaggregation-mode", "decode", *solo]
    table = load_flag_table(SGLANG_FLAGS)
    return checked(mixed, table), checked(solo, table)


def router_args(spec: ControllerSpec) -> list[str]:
    """The PD router's server lists; host names are placeholders for the pods' addresses."""
    args = ["--pd-disaggregation"]
    for i in range(spec.cluster.mixed_gpus):
        args += ["--prefill", f"http://mixed-{i}:{PORT}", str(BOOTSTRAP_PORT)]
    for i in range(spec.cluster.solo_gpus):
        args += ["--decode", f"http://solo-{i}:{PORT}"]
    return checked(args, load_flag_table(SGLANG_ROUTER_FLAGS))


def export(spec: ControllerSpec) -> ExportResult:
    mixed, solo = pool_args(spec)
    disaggregated = spec.cluster.solo_gpus > 0
    prio = plan.higher_first(spec)
    unmet = plan.common_unmet(
        spec,
        f"{ROUTER} picks the decode server by its load-balancing policy, the same way for "
        "every class",
        "SGLang request priority, higher first")
    lost = plan.mixed_decodes(spec, STACK, "prefill") if disaggregated else None
    if lost is not None:
        unmet.append(lost)
    files: dict[str, str] = {"mixed.args": plan.args_file(mixed)}
    if disaggregated:
        files["solo.args"] = plan.args_file(solo)
        files["router.args"] = plan.args_file(router_args(spec))
    files["pools.json"] = plan.json_text({
        "stack": STACK,
        "mixed": {"replicas": spec.cluster.mixed_gpus, "args": "mixed.args",
                  "disaggregation_mode": "prefill" if disaggregated else "null"},
        "solo": {"replicas": spec.cluster.solo_gpus,
                 "args": "solo.args" if disaggregated else None,
                 "disaggregation_mode": "decode" if disaggregated else None},
    })
    files["priorities.json"] = plan.json_text({
        "stack": STACK,
        "field": "priority",
        "order": "higher value runs first (requests without one get 0, after every class)",
        "classes": {name: prio[name] for name in plan.by_rank(spec)},
    })
    body = (
        f"mixed.args   {spec.cluster.mixed_gpus} servers: "
        "xargs -a mixed.args python -m sglang.launch_server --model-path MODEL\n"
        + (f"solo.args    {spec.cluster.solo_gpus} servers: "
           "xargs -a solo.args python -m sglang.launch_server --model-path MODEL\n"
           f"router.args  one {ROUTER}: xargs -a router.args python -m "
           "sglang_router.launch_router (replace mixed-N / solo-N with the servers' "
           "addresses)\n" if disaggregated else "")
        + "priorities.json  set each request's \"priority\" to its class's value\n"
        "pools.json   replica counts per pool\n"
    )
    files["README.txt"] = plan.readme(spec, STACK, body, unmet)
    return ExportResult(Target.SGLANG, STACK, files, tuple(unmet))
