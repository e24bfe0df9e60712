"""A NUL character in a file name is an error in words, never a ValueError from the OS.

Found by the mutation fuzzer: `classes from "\\x00t.csv"` reached `os.stat` and crashed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fluidgate.atomic import OutputError, write_output
from fluidgate.diagnostics import PolicyError
from fluidgate.reads import InputKind, ReadError, read_input
from fluidgate.sli_dsl.loader import parse_policy

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_read_refuses_a_nul_in_the_path() -> None:
    with pytest.raises(ReadError, match="contains a NUL character"):
        read_input("a\x00b.csv", InputKind.CLASS_TABLE)


def test_write_refuses_a_nul_in_the_path(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="contains a NUL character"):
        write_output(str(tmp_path / "out\x00.json"), "{}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("old, new", [
    ('classes from "azure_conv_classes.csv"', 'classes from "\x00azure_conv_classes.csv"'),
])
def test_policy_naming_a_file_with_a_nul_is_a_positioned_error(old: str, new: str) -> None:
    text = (EXAMPLES / "azure_conv.sli").read_text(encoding="utf-8")
    assert old in text
    with pytest.raises(PolicyError) as info:
        parse_policy(text.replace(old, new), str(EXAMPLES / "fuzz.sli"))
    diag = info.value.diagnostics[0]
    assert "NUL character" in diag.message
    assert diag.span is not None and diag.span.line == text[: text.index(old)].count("\n") + 1


def test_iteration_from_a_nul_path_is_a_positioned_error() -> None:
    text = (EXAMPLES / "calibrated.sli").read_text(encoding="utf-8")
    old = '"../fluidgate/calibration/data/sarathi-serve-fig2.calib.json"'
    assert old in text
    with pytest.raises(PolicyError) as info:
        parse_policy(text.replace(old, '"\x00x.json"'), str(EXAMPLES / "fuzz.sli"))
    assert "NUL character" in info.value.diagnostics[0].message
