"""Positioned diagnostics shared by every stage that reads user files.

Errors in a policy are data, not exceptions thrown from deep inside: each stage appends
`Diagnostic`s and the CLI renders them all at once in the format users grep for
(`file:line:col: error: message`, the source line, a caret under the offending span).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

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
        """Render like a compiler: location, message, then the source line with carets."""
        if self.span is None:
            head = f"{self.severity}: {self.message}"
        else:
            s = self.span
            head = f"{s.file}:{s.line}:{s.column}: {self.severity}: {self.message}"
        lines = [head]
        if source is not None and self.span is not None:
            src_lines = source.splitlines()
            if 1 <= self.span.line <= len(src_lines):
                text = src_lines[self.span.line - 1].expandtabs(1)
                lines.append("    " + text)
                width = (
                    self.span.end_column - self.span.column
                    if self.span.end_line == self.span.line
                    else len(text) - self.span.column + 1
                )
                lines.append("    " + " " * (self.span.column - 1) + "^" * max(1, width))
        if self.hint:
            lines.append(f"    hint: {self.hint}")
        return "\n".join(lines)


@dataclass
class DiagnosticBag:
    """Collects diagnostics so a checker can report every problem in one pass."""

    items: list[Diagnostic] = field(default_factory=list)

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

    def __init__(self, diagnostics: Sequence[Diagnostic], source: str | None = None) -> None:
        self.diagnostics = list(diagnostics)
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(d.render(self.source) for d in self.diagnostics)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ` (did you mean 'x'?)` suffix, or '' when nothing is close enough to suggest."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
