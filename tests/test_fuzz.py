"""Fuzz the front end: whatever the input, only documented errors come out.

Random text, random token soup in the language's own vocabulary, and mutations of valid
policies (deleted, duplicated and swapped spans). Parsing, checking and SLO compilation
must either succeed or raise `PolicyError` whose every line is in the documented format.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluidgate.diagnostics import PolicyError
from fluidgate.formulations.slo_compile import compile_all
from fluidgate.sli_dsl.loader import parse_policy
from fluidgate.sli_dsl.parser import PolicyParser
from tests.conftest import EXAMPLES

PARSER = PolicyParser()
SEEDS = [p.read_text(encoding="utf-8") for p in sorted(EXAMPLES.glob("*.sli"))]
HEAD = re.compile(r"^(fuzz\.sli:\d+:\d+: (error|warning): .+|    .*|    \^+|    hint: .+)$")
VOCAB = [
    "cluster", "pricing", "bundled", "separate", "class", "slo", "soft", "penalty",
    "iteration", "from", "mixed", "solo", "chunk", "gpus", "max_batch", "rate", "prompt",
    "output", "patience", "none", "price", "input", "objective", "maximize", "revenue",
    "tpot", "ttft", "spread", "prefill", "decode", "all", "abandonment", "served", "{", "}",
    "(", ")", "=", "<=", ">=", "==", "+", "-", "*", "/", ";", "\n", "12", "0", "0.5",
    "1e-3", "ms", "s", "%", "/s", "per", "gpu", "token", "tokens", "ms/token", '"x"', "#",
]


def check_only_documented(text: str) -> None:
    try:
        policy = parse_policy(text, "fuzz.sli", parser=PARSER).policy
        compiled = compile_all(policy)
        if compiled.errors:
            raise PolicyError(compiled.errors, text)
    except PolicyError as exc:
        rendered = exc.render()
        assert rendered, "an error with no message"
        for line in rendered.splitlines():
            assert HEAD.match(line), f"undocumented output line: {line!r}"


FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.text(max_size=300))
def test_random_text(text: str) -> None:
    check_only_documented(text)


@FAST
@given(st.lists(st.sampled_from(VOCAB), max_size=80))
def test_token_soup(tokens: list[str]) -> None:
    check_only_documented(" ".join(tokens))


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        if not text:
            break
        i = draw(st.integers(0, len(text) - 1))
        j = draw(st.integers(i, min(len(text), i + 40)))
        op = draw(st.sampled_from(["delete", "duplicate", "insert", "replace"]))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        elif op == "insert":
            text = text[:i] + draw(st.sampled_from(VOCAB)) + text[i:]
        else:
            text = text[:i] + draw(st.text(max_size=5)) + text[j:]
    return text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_policies(text: str) -> None:
    check_only_documented(text)
