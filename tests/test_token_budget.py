"""A policy's token count is bounded before Lark sees it, so memory stays bounded too."""

from __future__ import annotations

import pytest

from fluidgate.diagnostics import PolicyError
from fluidgate.sli_dsl.parser import TOKEN_BUDGET, PolicyParser, _past_token_budget

HEAD = (
    "cluster {\n  gpus = 10; max_batch = 16; chunk = 256 tokens\n"
    "  iteration { mixed = 17.4 ms + 0.062 ms/token * chunk; solo = 22 ms }\n}\n"
    "pricing bundled { input = 0.1 per token; output = 0.2 per token }\n"
)


def _policy_with_terms(terms: int) -> str:
    # "rate = 0.5 /s per gpu" then `+ 0 /s per gpu` repeated: 5 tokens per term
    body = "0.5 /s per gpu" + " + 0 /s per gpu" * terms
    return HEAD + f"class a {{ rate = {body}; prompt = 300 tokens; output = 1000 tokens }}\n"


def test_over_budget_is_a_positioned_error_at_the_first_token_past_it() -> None:
    text = _policy_with_terms(TOKEN_BUDGET // 5 + 10)
    offset = _past_token_budget(text)
    assert offset is not None
    with pytest.raises(PolicyError) as info:
        PolicyParser().parse(text, "big.sli")
    diag = info.value.diagnostics[0]
    assert diag.span is not None and diag.span.file == "big.sli"
    line_start = text.rfind("\n", 0, offset) + 1
    assert (diag.span.line, diag.span.column) == (text.count("\n", 0, offset) + 1,
                                                   offset - line_start + 1)
    assert "400,000" in diag.message and "classes from" in (diag.hint or "")


def test_counts_words_numbers_and_symbols() -> None:
    # 'rate = 1.5e3 /s;' is 6 tokens: rate, =, 1.5e3, /, s, ;
    unit = "rate = 1.5e3 /s;"
    text = unit * (TOKEN_BUDGET // 6) + " " * TOKEN_BUDGET
    assert _past_token_budget(text) is None
    assert _past_token_budget(text + unit) is not None


def test_short_texts_are_not_counted() -> None:
    assert _past_token_budget(";" * TOKEN_BUDGET) is None
    assert _past_token_budget(";" * (TOKEN_BUDGET + 1)) == TOKEN_BUDGET
