"""Positioned diagnostics shared by every stage that reads user files.

Errors in a policy are data, not exceptions thrown from deep inside: each stage appends
`Diagnostic`s and the CLI renders them all at once in the format users grep for
(`file:line:col: error: message`, the source line, a caret under the offending span).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from fluidgate.textsafe import safe_text

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Span:
    """A region of a source file; lines and columns count from 1, `end_column` is exclusive."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int


@dataclass(frozen=True, slots=True)
class Diagnostic:
    message: str
    span: Span | None = None
    severity: Severity = "error"
    hint: str | None = None

    def render(self, source: str | None = None) -> str:
        """Render like a compiler: location, message, then the source line with carets.

        Everything from the user (file name, message, source line, hint) passes through
        `safe_text`, so a control character in a policy is shown escaped, never obeyed; the
        carets are placed under the escaped rendering of the span.
        """
        if self.span is None:
            head = f"{self.severity}: {safe_text(self.message)}"
        else:
            s = self.span
            head = (f"{safe_text(s.file)}:{s.line}:{s.column}: {self.severity}: "
                    f"{safe_text(self.message)}")
        lines = [head]
        if source is not None and self.span is not None:
            src_lines = source.splitlines()
            if 1 <= self.span.line <= len(src_lines):
                lines.extend(_source_with_carets(src_lines[self.span.line - 1], self.span))
        if self.hint:
            lines.append(f"    hint: {safe_text(self.hint)}")
        return "\n".join(lines)


_SHOWN_WIDTH = 120  # a longer source line is shown as a window around the span


def _source_with_carets(raw: str, span: Span) -> list[str]:
    """The source line and a caret line, both in escaped form so the carets stay aligned;
    a very long line (a generated policy, a hostile one) is cut to a window around the span."""
    text = raw.expandtabs(1)
    start = max(0, span.column - 1)
    end = max(start, span.end_column - 1 if span.end_line == span.line else len(text))
    before = safe_text(text[:start])
    inside = safe_text(text[start:end])
    after = safe_text(text[end:])
    if len(before) > _SHOWN_WIDTH // 3:
        before = "…" + before[-(_SHOWN_WIDTH // 3):]
    if len(inside) > _SHOWN_WIDTH:
        inside, after = inside[:_SHOWN_WIDTH], "…"
    elif len(before) + len(inside) + len(after) > _SHOWN_WIDTH + _SHOWN_WIDTH // 3:
        after = after[: max(0, _SHOWN_WIDTH - len(inside))] + "…"
    carets = " " * len(before) + "^" * max(1, len(inside))
    return ["    " + before + inside + after, "    " + carets]


@dataclass
class DiagnosticBag:
    """Collects diagnostics so a checker can report every problem in one pass."""

    items: list[Diagnostic] = field(default_factory=list)
    # texts of files other than the policy that diagnostics point into (class tables)
    sources: dict[str, str] = field(default_factory=dict)

    def error(self, message: str, span: Span | None = None, hint: str | None = None) -> None:
        self.items.append(Diagnostic(message, span, "error", hint))

    def warning(self, message: str, span: Span | None = None, hint: str | None = None) -> None:
        self.items.append(Diagnostic(message, span, "warning", hint))

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "warning"]


class PolicyError(Exception):
    """Raised when a policy cannot go further; carries every diagnostic found so far."""

    def __init__(self, diagnostics: Sequence[Diagnostic], source: str | None = None,
                 sources: Mapping[str, str] | None = None) -> None:
        self.diagnostics = list(diagnostics)
        self.source = source
        # other files the diagnostics may point into (a class table beside the policy),
        # by the file name their spans carry; a span into one is shown with its own line
        self.sources = dict(sources or {})
        super().__init__(self.render())

    def _source_for(self, d: Diagnostic) -> str | None:
        if d.span is not None and d.span.file in self.sources:
            return self.sources[d.span.file]
        return self.source

    def render(self) -> str:
        return "\n".join(d.render(self._source_for(d)) for d in self.diagnostics)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ` (did you mean 'x'?)` suffix, or '' when nothing is close enough to suggest."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
