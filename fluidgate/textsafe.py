"""Make text that came from a user (a policy, a file name, a log line) safe to print.

A policy string, a path or a class label reaches the terminal inside messages and tables. A raw
ESC there can clear the screen or rewrite earlier lines, a carriage return can hide what was
printed before it, and a bidi override can make the shown text differ from what is stored. So
every character that is not meant to be seen is shown as a Python-style escape (`\\x1b`,
`\\u202e`) instead: the output stays one visible, greppable rendering of the input.
"""

from __future__ import annotations

import unicodedata

# Unicode categories whose characters are invisible or steer the terminal: controls (C0, DEL,
# C1), format characters (bidi overrides and isolates, zero-width characters, BOM), line and
# paragraph separators, and lone surrogates (undecodable bytes kept by `surrogateescape`).
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_KEPT_IN_MULTILINE = frozenset({"\n", "\t"})


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def is_unsafe(char: str) -> bool:
    """Whether one character would act on the terminal or be invisible when printed."""
    return unicodedata.category(char) in _UNSAFE_CATEGORIES


def safe_text(text: str, *, multiline: bool = False) -> str:
    """`text` with every control, format and separator character shown as an escape.

    With `multiline`, newlines and tabs are kept (a rendered diagnostic has several lines);
    otherwise they are escaped too, so a table cell or a one-line message stays one line.
    The result holds only printable characters (and those two), so applying it twice changes
    nothing: a backslash is printable and is left as it is.
    """
    if text.isprintable():  # fast path: no character of an unsafe category
        return text
    kept = _KEPT_IN_MULTILINE if multiline else frozenset()
    return "".join(
        _escape(c) if c not in kept and unicodedata.category(c) in _UNSAFE_CATEGORIES else c
        for c in text
    )


def safe_quoted(text: str) -> str:
    """`'text'` made safe, for naming a user's value inside a message."""
    return f"'{safe_text(text)}'"
