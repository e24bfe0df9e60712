"""User text reaches the terminal only with its control characters shown as escapes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from fluidgate.cli import app
from fluidgate.diagnostics import Diagnostic, Span
from fluidgate.textsafe import safe_quoted, safe_text

RUN = CliRunner()


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain ascii", "plain ascii"),
        ("café – 5 µs", "café – 5 µs"),  # printable non-ASCII is kept as it is
        ("\x1b[2Jgone", "\\x1b[2Jgone"),  # ESC (C0)
        ("a\rb", "a\\x0db"),  # a carriage return would hide "a"
        ("bell\x07", "bell\\x07"),
        ("del\x7f", "del\\x7f"),
        ("csi\x9b2J", "csi\\x9b2J"),  # C1 control sequence introducer
        ("evil\u202etxt.sli", "evil\\u202etxt.sli"),  # right-to-left override
        ("iso\u2066x\u2069", "iso\\u2066x\\u2069"),  # bidi isolates
        ("zw\u200bsp", "zw\\u200bsp"),
        ("line\u2028sep", "line\\u2028sep"),
        ("bad\udcffbyte", "bad\\udcffbyte"),  # a lone surrogate from surrogateescape
        ("tab\there", "tab\\x09here"),
        ("two\nlines", "two\\x0alines"),
    ],
)
def test_single_line_escapes(raw: str, shown: str) -> None:
    assert safe_text(raw) == shown


def test_multiline_keeps_newlines_and_tabs_only() -> None:
    assert safe_text("a\n\tb\x1b[0m\r\n", multiline=True) == "a\n\tb\\x1b[0m\\x0d\n"


def test_quoted() -> None:
    assert safe_quoted("x\x1by") == "'x\\x1by'"


_STEERING = (
    set(range(0x20)) | set(range(0x7F, 0xA0)) | set(range(0x202A, 0x202F))
    | set(range(0x2066, 0x206A)) | {0x200E, 0x200F, 0x061C, 0x2028, 0x2029}
    | set(range(0xD800, 0xE000))
)


@given(st.text())
def test_no_steering_character_survives_and_escaping_is_idempotent(text: str) -> None:
    once = safe_text(text)
    assert not {ord(c) for c in once} & _STEERING
    assert safe_text(once) == once
    multi = safe_text(text, multiline=True)
    assert not {ord(c) for c in multi} & (_STEERING - {0x0A, 0x09})
    assert multi.count("\n") == text.count("\n")


def test_diagnostic_carets_stay_under_the_span_after_escaping() -> None:
    source = 'policy "\x1b[2J"; cluster { gpus = x }\n'
    col = source.index("x }") + 1
    d = Diagnostic("bad", Span("f\x1b.sli", 1, col, 1, col + 1))
    out = d.render(source)
    assert "\x1b" not in out
    head, line, carets = out.splitlines()
    assert head == f"f\\x1b.sli:1:{col}: error: bad"
    assert line[carets.index("^")] == "x"
    assert carets.count("^") == 1


def test_control_characters_in_a_policy_never_reach_the_terminal(tmp_path: Path) -> None:
    from tests.conftest import REFERENCE

    text = REFERENCE.replace("cluster {", 'cluster {\n    iteration from "\x1b[2J\u202e.json"', 1)
    bad = tmp_path / "p\x1b]0;title\x07.sli"
    bad.write_text(text, encoding="utf-8")
    for command in (["check", str(bad)], ["solve", str(bad)], ["explain", str(bad)]):
        res = RUN.invoke(app, command)
        assert res.exit_code == 2, res.output
        assert "\x1b" not in res.output and "\u202e" not in res.output and "\x07" not in res.output
        assert "\\x1b[2J\\u202e.json" in res.output
        assert "p\\x1b]0;title\\x07.sli" in res.output
