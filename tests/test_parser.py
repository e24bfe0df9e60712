"""Parser details users never see until they go wrong."""

from __future__ import annotations

import contextlib
import gc

import pytest

from fluidgate.diagnostics import PolicyError
from fluidgate.sli_dsl.parser import PolicyParser, default_parser


@pytest.mark.parametrize("text", ["cluster @", 'policy "C:\\data"', 'policy "fine"'])
def test_garbage_collector_is_restored_whatever_happens(text: str) -> None:
    assert gc.isenabled()
    with contextlib.suppress(PolicyError):
        PolicyParser().parse(text)
    assert gc.isenabled()


@pytest.mark.parametrize(
    ("literal", "value"),
    [('"plain"', "plain"), ('"say \\"hi\\""', 'say "hi"'), ('"back\\\\slash"', "back\\slash")],
)
def test_string_escapes(literal: str, value: str) -> None:
    doc = default_parser().parse(f"policy {literal}")
    assert doc.items[0].name == value  # type: ignore[union-attr]


def test_default_parser_is_built_once() -> None:
    assert default_parser() is default_parser()

