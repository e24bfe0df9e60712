"""Exporters: flags each stack's parser accepts, replica counts, priority signs, unmet rules."""

from __future__ import annotations

import json
import math
import shlex
from typing import Any

import pytest
import yaml

from fluidgate.controllers.export.base import ExportError, Target
from fluidgate.controllers.export.flags import (
    SGLANG_FLAGS,
    SGLANG_ROUTER_FLAGS,
    VLLM_FLAGS,
    load_flag_table,
)
from fluidgate.controllers.export.registry import export_spec
from fluidgate.controllers.spec import dump_spec, parse_spec
from tests.export_specs import reference_raw, spec_of, three_classes, without_solo_pool

REF = spec_of(reference_raw())


def args_of(text: str) -> list[str]:
    return [tok for line in text.splitlines() for tok in shlex.split(line)]


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


# --- the reference plan: 107 mixed + 393 solo ------------------------------------------

def test_reference_pools_are_107_and_393_everywhere() -> None:
    # DESIGN §2: x* = (0.018261, 0.194953) at n = 500 → ⌈500·0.213214⌉ = ⌈106.6⌉ = 107.
    m = math.ceil(500 * (0.018261 + 0.194953))
    assert (m, 500 - m) == (107, 393)
    for target in (Target.VLLM, Target.SGLANG):
        pools = json.loads(export_spec(REF, target).files["pools.json"])
        assert (pools["mixed"]["replicas"], pools["solo"]["replicas"]) == (m, 500 - m)
    graph = docs(export_spec(REF, Target.DYNAMO).files["dynamo.yaml"])[1]
    replicas = {c["type"]: c["replicas"] for c in graph["spec"]["components"]}
    assert replicas == {"frontend": 1, "prefill": m, "decode": 500 - m}
    pools = docs(export_spec(REF, Target.LLMD).files["pools.yaml"])
    by_role = {d["metadata"]["labels"]["llm-d.ai/role"]: d["spec"]["replicas"] for d in pools}
    assert by_role == {"prefill-decode": m, "decode": 500 - m}
    router = args_of(export_spec(REF, Target.SGLANG).files["router.args"])
    assert router.count("--prefill") == m and router.count("--decode") == 500 - m


def test_vllm_reference_knobs() -> None:
    files = export_spec(REF, Target.VLLM).files
    mixed, solo = args_of(files["mixed.args"]), args_of(files["solo.args"])

    def value(args: list[str], flag: str) -> str:
        return args[args.index(flag) + 1]

    assert value(mixed, "--max-num-seqs") == value(solo, "--max-num-seqs") == "16"  # B
    assert value(mixed, "--long-prefill-token-threshold") == "256"  # C
    assert int(value(mixed, "--max-num-batched-tokens")) >= 256 + 16  # ≥ C + B
    assert "--enable-chunked-prefill" in mixed
    assert value(mixed, "--scheduling-policy") == "priority"
    assert json.loads(value(mixed, "--kv-transfer-config"))["kv_role"] == "kv_producer"
    assert json.loads(value(solo, "--kv-transfer-config"))["kv_role"] == "kv_consumer"


def test_sglang_reference_knobs() -> None:
    files = export_spec(REF, Target.SGLANG).files
    mixed, solo = args_of(files["mixed.args"]), args_of(files["solo.args"])
    assert mixed[mixed.index("--disaggregation-mode") + 1] == "prefill"
    assert solo[solo.index("--disaggregation-mode") + 1] == "decode"
    assert mixed[mixed.index("--chunked-prefill-size") + 1] == "256"
    assert solo[solo.index("--max-running-requests") + 1] == "16"
    assert "--enable-priority-scheduling" in mixed and "--enable-priority-scheduling" in solo


# --- every flag exists in that version's parser -----------------------------------------

def _engine_args(target: Target) -> list[tuple[str, list[str]]]:
    """(flag table, argument list) for every engine command line the target emits."""
    files = export_spec(REF, target).files
    if target is Target.VLLM:
        return [(VLLM_FLAGS, args_of(files[n])) for n in ("mixed.args", "solo.args")]
    if target is Target.SGLANG:
        return [(SGLANG_FLAGS, args_of(files["mixed.args"])),
                (SGLANG_FLAGS, args_of(files["solo.args"])),
                (SGLANG_ROUTER_FLAGS, args_of(files["router.args"]))]
    if target is Target.DYNAMO:
        graph = docs(files["dynamo.yaml"])[1]
        out = []
        for comp in graph["spec"]["components"]:
            if comp["type"] == "frontend":
                continue
            args = comp["podTemplate"]["spec"]["containers"][0]["args"]
            i = args.index("--disaggregation-mode")  # Dynamo's own flag, not vLLM's
            out.append((VLLM_FLAGS, args[:i] + args[i + 2:]))
        return out
    return [(VLLM_FLAGS, d["spec"]["template"]["spec"]["containers"][0]["args"])
            for d in docs(files["pools.yaml"])]


@pytest.mark.parametrize("target", [Target.VLLM, Target.SGLANG, Target.DYNAMO, Target.LLMD])
def test_every_exported_engine_flag_is_in_the_parser_data(target: Target) -> None:
    lists = _engine_args(target)
    assert lists
    for table_name, args in lists:
        table = load_flag_table(table_name)
        flags = [a for a in args if a.startswith("--")]
        assert flags and all(f in table.flags for f in flags), (table_name, flags)
        assert table.problems(args) == []


def test_flag_table_rejects_what_the_parser_would() -> None:
    table = load_flag_table(VLLM_FLAGS)
    assert table.problems(["--max-num-sequences", "16"])  # misspelt
    assert table.problems(["--scheduling-policy", "lowest-first"])  # not a choice
    assert table.problems(["--max-num-seqs"])  # value missing
    assert table.problems(["--enable-chunked-prefill", "yes"])  # a switch with a value


@pytest.mark.parametrize(("name", "stack", "version"), [
    (VLLM_FLAGS, "vllm", "0.33.0"), (SGLANG_FLAGS, "sglang", "0.5.23"),
    (SGLANG_ROUTER_FLAGS, "sglang-router", "0.3.2")])
def test_flag_data_says_where_it_came_from(name: str, stack: str, version: str) -> None:
    table = load_flag_table(name)
    assert (table.stack, table.version) == (stack, version)
    assert f"{version}" in table.source and ".whl" in table.source
    assert table.extracted and len(table.flags) > 50


# --- priorities: the sign each stack wants ----------------------------------------------

def test_priority_signs_follow_each_stack() -> None:
    spec = spec_of(three_classes((3, 1, 2)))  # b first, then c, then a
    order = ["b", "c", "a"]
    vllm = json.loads(export_spec(spec, Target.VLLM).files["priorities.json"])["classes"]
    assert sorted(vllm, key=vllm.__getitem__) == order  # lower runs first
    assert all(v < 0 for v in vllm.values())  # unlabelled requests (0) go last
    sgl = json.loads(export_spec(spec, Target.SGLANG).files["priorities.json"])["classes"]
    assert sorted(sgl, key=sgl.__getitem__, reverse=True) == order  # higher runs first
    assert all(v > 0 for v in sgl.values())
    mixed = args_of(export_spec(spec, Target.SGLANG).files["mixed.args"])
    assert mixed[mixed.index("--default-priority-value") + 1] == "0"
    objs = docs(export_spec(spec, Target.LLMD).files["objectives.yaml"])
    prio = {o["metadata"]["name"]: o["spec"]["priority"] for o in objs}
    assert sorted(prio, key=prio.__getitem__, reverse=True) == order
    assert {o["apiVersion"] for o in objs} == {"inference.networking.x-k8s.io/v1alpha2"}
    policy = yaml.safe_load(export_spec(spec, Target.DYNAMO).files["router-policy.yaml"])
    assert [c["name"] for c in policy["policy_classes"]] == order
    assert policy["default_policy_family"] == "b"


def test_reference_rank_one_is_the_class_the_plan_never_keeps_waiting() -> None:
    # Bundled plans rank by the optimum's mean prefill wait q_p*/λ: prefill_heavy 0 s,
    # decode_heavy 0.31669/0.5 = 0.633 s (DESIGN §2), so prefill_heavy runs first.
    assert [c.priority for c in REF.classes] == [2, 1]
    vllm = json.loads(export_spec(REF, Target.VLLM).files["priorities.json"])["classes"]
    assert vllm == {"prefill_heavy": -2, "decode_heavy": -1}
    sgl = json.loads(export_spec(REF, Target.SGLANG).files["priorities.json"])["classes"]
    assert sgl == {"prefill_heavy": 2, "decode_heavy": 1}


# --- unmet rules are listed, never dropped -----------------------------------------------

def test_reference_unmet_rules() -> None:
    result = export_spec(REF, Target.VLLM)
    rules = [u.rule for u in result.unmet]
    assert any(r.startswith("occupancy-deficit admission gate") for r in rules)
    assert any(r.startswith("solo-first decode placement") for r in rules)
    # decode_heavy is admitted at 234.17 of 250 req/s: a per-class admission target.
    assert any("decode_heavy 234.17 of 250.00" in r for r in rules)
    readme = " ".join(result.files["README.txt"].split())  # README.txt wraps long lines
    assert all(" ".join(r.split()) in readme for r in rules)
    assert "fluidgate.controllers.runtime" in readme
    sgl = [u.rule for u in export_spec(REF, Target.SGLANG).unmet]
    assert any(r.startswith("decodes on mixed GPUs") for r in sgl)  # 1599 planned there
    assert not any(r.startswith("decodes on mixed GPUs") for r in rules)  # vLLM keeps them


def test_sli_split_router_lists_per_class_probabilities() -> None:
    raw = reference_raw()
    raw["router"] = "sli-split"
    for target in (Target.VLLM, Target.SGLANG, Target.DYNAMO, Target.LLMD):
        rule = export_spec(spec_of(raw), target).unmet[0].rule
        assert rule.startswith("per-class probabilistic routing")
        assert "prefill_heavy 0.5194" in rule and "decode_heavy 1.0000" in rule


def test_static_priority_gate_is_native_where_stacks_have_strict_priority() -> None:
    spec = spec_of(three_classes(gate="static-priority", pricing="separate"))
    for target in (Target.VLLM, Target.SGLANG, Target.LLMD):
        assert not any("admission gate:" in u.rule and "static" in u.rule
                       for u in export_spec(spec, target).unmet)
    dyn = [u.rule for u in export_spec(spec, Target.DYNAMO).unmet]
    assert any(r.startswith("static-priority admission gate") for r in dyn)


# --- pools without solo GPUs, fractional chunks, the spec itself -------------------------

def test_no_solo_pool_means_no_disaggregation() -> None:
    spec = spec_of(without_solo_pool())
    files = export_spec(spec, Target.VLLM).files
    assert "solo.args" not in files and "--kv-transfer-config" not in files["mixed.args"]
    sgl = export_spec(spec, Target.SGLANG).files
    assert "router.args" not in sgl and "--disaggregation-mode" not in sgl["mixed.args"]
    graph = docs(export_spec(spec, Target.DYNAMO).files["dynamo.yaml"])[1]
    assert [c["type"] for c in graph["spec"]["components"]] == ["frontend", "worker"]


def test_fractional_chunk_is_refused() -> None:
    raw = reference_raw()
    raw["cluster"]["chunk"] = 255.5
    with pytest.raises(ExportError, match=r"cluster\.chunk"):
        export_spec(spec_of(raw), Target.VLLM)


def test_json_and_yaml_targets_carry_the_spec_exactly() -> None:
    assert export_spec(REF, Target.JSON).files == {"controller.json": dump_spec(REF)}
    text = export_spec(REF, Target.YAML).files["controller.yaml"]
    back = parse_spec(json.dumps(yaml.safe_load(text)))
    assert back == REF and dump_spec(back) == dump_spec(REF)
