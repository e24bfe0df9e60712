"""Classification rules: the spec's block, the builder's ranges, and the `Classifier`.

Expected classes are worked out by hand from the rules (or, for the nearest class, from
log distances computed here in a different way: ratios of token counts), never read back
from the classifier.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fluidgate.controllers.build import classification
from fluidgate.controllers.classify import Classifier, Unclassified
from fluidgate.controllers.spec import (
    SCHEMA_ID,
    ControllerSpec,
    SpecError,
    dump_spec,
    load_spec,
    parse_spec,
)
from fluidgate.model import WorkloadClass
from tests.controller_specs import Cls, make_spec
from tests.export_specs import REFERENCE_SPEC, reference_raw

V1_SPEC = REFERENCE_SPEC.parent / "reference.v1.controller.json"


def _with(raw: dict[str, Any], block: dict[str, Any]) -> ControllerSpec:
    raw = copy.deepcopy(raw)
    raw["classification"] = block
    return parse_spec(json.dumps(raw), "test")


def _headers(**given: str) -> Any:
    lower = {k.lower().replace("_", "-"): v for k, v in given.items()}
    return lambda name: lower.get(name.lower())


# --- the builder ------------------------------------------------------------------------

def _workload(name: str, prompt: float, output: float = 100.0) -> WorkloadClass:
    return WorkloadClass(name, 0.5, prompt, output, 10.0, 0.1, 0.2)


def test_reference_ranges_split_where_the_log_distance_does() -> None:
    # 300 and 3000 tokens: 948/300 = 3.160 < 3000/948 = 3.165 (nearer 300), while
    # 949/300 = 3.163 > 3000/949 = 3.161 (nearer 3000): the split is at 949.
    assert 948 / 300 < 3000 / 948 and 949 / 300 > 3000 / 949
    rules = load_spec(REFERENCE_SPEC).classification.rules
    assert [(r.class_, r.prompt_tokens and (r.prompt_tokens.min, r.prompt_tokens.max))
            for r in rules] == [("decode_heavy", (None, 949)), ("prefill_heavy", (949, None))]
    assert all(r.models is None and r.header is None for r in rules)


def test_three_classes_get_three_ranges() -> None:
    # √(100·1000) = 316.2 and √(1000·10000) = 3162.3: whole tokens from 317 and 3163
    block = classification([_workload("s", 100), _workload("m", 1000), _workload("l", 1e4)])
    got = [(r["class"], r["prompt_tokens"]) for r in block["rules"]]  # type: ignore[attr-defined]
    assert got == [("s", {"min": None, "max": 317}), ("m", {"min": 317, "max": 3163}),
                   ("l", {"min": 3163, "max": None})]
    assert block["fallback"] == "nearest"


def test_classes_sharing_a_prompt_mean_are_left_to_the_fallback() -> None:
    block = classification([_workload("chat", 300, 50), _workload("gen", 300, 2000),
                            _workload("rag", 3000, 200)])
    assert block["rules"] == [{"class": "rag", "prompt_tokens": {"min": 949, "max": None}}]
    assert "chat, gen: no range of its own" in str(block["reason"])


def test_one_class_needs_no_rule() -> None:
    assert classification([_workload("only", 300)])["rules"] == []


# --- the spec block -----------------------------------------------------------------------

@pytest.mark.parametrize(("block", "words"), [
    ({"rules": [{"class": "nope", "models": ["m"]}]}, "names class 'nope'"),
    ({"rules": [{"class": "decode_heavy"}]}, "at least one of models, header"),
    ({"rules": [{"class": "decode_heavy", "prompt_tokens": {"min": 50, "max": 50}}]},
     "min (50) must be below max (50)"),
    ({"rules": [{"class": "decode_heavy", "prompt_tokens": {}}]}, "give min, max or both"),
    ({"rules": [{"class": "decode_heavy", "prompt_tokens": {"min": -1}}]},
     "classification.rules[0].prompt_tokens.min"),
    ({"rules": [{"class": "decode_heavy", "header": {"name": "X Tenant", "values": ["a"]}}]},
     "classification.rules[0].header.name"),
    ({"rules": [{"class": "decode_heavy", "models": []}]}, "classification.rules[0].models"),
    ({"rules": [{"class": "decode_heavy", "model": ["m"]}]}, "rules[0].model: Extra inputs"),
    ({"fallback": "guess"}, "classification.fallback"),
])
def test_bad_rules_are_refused_in_words(block: dict[str, Any], words: str) -> None:
    with pytest.raises(SpecError, match=words.replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(").replace(")", r"\)")):
        _with(reference_raw(), block)


def test_a_v1_spec_still_loads_and_is_written_as_v2(tmp_path: Path) -> None:
    old = load_spec(V1_SPEC)
    assert old.classification.rules == [] and old.classification.fallback == "nearest"
    text = dump_spec(old)
    assert json.loads(text)["schema"] == SCHEMA_ID
    again = parse_spec(text)
    assert dump_spec(again) == text
    # the v1 file differs from the v2 reference only in the schema and the new block
    new = json.loads(REFERENCE_SPEC.read_text(encoding="utf-8"))
    v1 = json.loads(V1_SPEC.read_text(encoding="utf-8"))
    del new["classification"]
    assert {**v1, "schema": SCHEMA_ID} == new


def test_a_v1_spec_with_a_classification_block_is_refused() -> None:
    raw = reference_raw()
    raw["schema"] = "fluidgate.controller/v1"
    with pytest.raises(SpecError, match="classification needs schema"):
        parse_spec(json.dumps(raw))


# --- the classifier -------------------------------------------------------------------------

RULES = {"rules": [
    {"class": "prefill_heavy", "models": ["big-model"]},
    {"class": "decode_heavy", "header": {"name": "X-Tenant", "values": ["acme", "beta"]}},
    {"class": "prefill_heavy", "prompt_tokens": {"min": 1000}},
    {"class": "decode_heavy", "models": ["chat"], "prompt_tokens": {"max": 100}},
], "fallback": "reject"}
DH, PH = 0, 1  # decode_heavy, prefill_heavy in the reference


def test_each_rule_kind_and_their_order() -> None:
    c = Classifier(_with(reference_raw(), RULES))
    assert c.classify(5, model="big-model") == PH  # model
    assert c.classify(5, header=_headers(X_Tenant="beta")) == DH  # header value
    assert c.classify(5, header=_headers(x_tenant="acme")) == DH  # header names: any case
    assert c.classify(1000) == PH and c.classify(999_999) == PH  # prompt length, min inclusive
    assert c.classify(50, model="chat") == DH  # both conditions of one rule
    # the first rule that matches wins: a big-model request from acme is prefill_heavy
    assert c.classify(5, model="big-model", header=_headers(X_Tenant="acme")) == PH


def test_the_class_header_wins_over_every_rule() -> None:
    c = Classifier(_with(reference_raw(), RULES))
    assert c.classify(5000, model="big-model",
                      header=_headers(X_Fluidgate_Class="decode_heavy")) == DH
    with pytest.raises(Unclassified, match="unknown class in X-Fluidgate-Class; classes: "
                       "decode_heavy, prefill_heavy"):
        c.classify(5000, header=_headers(X_Fluidgate_Class="Decode_Heavy"))


@pytest.mark.parametrize(("prompt", "model", "headers"), [
    (999, None, {}),  # below the length rule's minimum
    (100, "chat", {}),  # chat, but max is exclusive
    (5, "small-model", {}),
    (5, None, {"X_Tenant": "ACME"}),  # values compare exactly
    (5, None, {"X_Other": "acme"}),
])
def test_no_match_under_reject_is_refused(prompt: int, model: str | None,
                                          headers: dict[str, str]) -> None:
    c = Classifier(_with(reference_raw(), RULES))
    with pytest.raises(Unclassified, match="matches no class rule"):
        c.classify(prompt, model=model, header=_headers(**headers))


def _nearest_by_ratios(prompts: list[float], outputs: list[float], p: float,
                       o: float | None) -> int:
    """log distance via ratios: |log(a/b)| = log(max(a, b)/min(a, b))."""
    def far(a: float, b: float) -> float:
        return math.log(max(a, b) / min(a, b)) ** 2
    d = [far(p, cp) + (0.0 if o is None else far(o, co)) for cp, co in zip(prompts, outputs,
                                                                           strict=True)]
    return d.index(min(d))


def test_nearest_fallback_uses_max_tokens_when_given() -> None:
    # classes share a prompt mean: only the output tells them apart
    spec = make_spec([Cls(1.0, prompt=300, output=50), Cls(1.0, prompt=300, output=2000),
                      Cls(1.0, prompt=3000, output=200)])
    c = Classifier(spec)
    assert c.classify(320, 60) == 0 and c.classify(320, 1500) == 1
    assert c.classify(320) == 0  # no output stated: prompt only, the first of the tie
    assert c.classify(2500, 1500) == 2
    prompts, outputs = [300.0, 300.0, 3000.0], [50.0, 2000.0, 200.0]
    for p in (1, 10, 300, 900, 1000, 5000, 100_000):
        for o in (1, 40, 316, 317, 2000, 30_000):
            assert c.classify(p, o) == _nearest_by_ratios(prompts, outputs, p, o)


def test_trace_classes_follow_the_gateway() -> None:
    c = Classifier(_with(reference_raw(), {**RULES, "fallback": "nearest"}))
    rng = np.random.default_rng(5)
    prompt = rng.integers(0, 5000, 400)
    output = rng.integers(0, 3000, 400)
    labels = c.classify_known(prompt, output)
    # the model and header rules cannot match a trace request; the length rule and the
    # nearest class decide, as for a gateway request without model or headers
    assert labels.tolist() == [c.classify(int(p), int(o)) for p, o in zip(prompt, output,
                                                                         strict=True)]
    assert set(labels[prompt >= 1000].tolist()) == {PH}


def test_trace_requests_no_rule_matches_go_to_the_nearest_class_even_under_reject() -> None:
    c = Classifier(_with(reference_raw(), RULES))
    labels = c.classify_known([5, 999, 1000], [1000, 390, 1])
    # (999, 390): log(999/300)² + log(1000/390)² = 2.33 to decode_heavy against
    # log(3000/999)² + log(400/390)² = 1.21 to prefill_heavy; 1000 tokens: the length rule
    want = [_nearest_by_ratios([300, 3000], [1000, 400], p, o) for p, o in ((5, 1000),
                                                                           (999, 390))]
    assert labels.tolist() == [*want, PH]
    assert want == [DH, PH]
