"""What every exporter returns: named files, the stack version checked, and the unmet rules.

An export is data first (an `ExportResult`) and files second, so the command can print it,
write it atomically, or a test can read it without touching the disk.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from enum import StrEnum

RUNTIME_GATE = (
    "run fluidgate's runtime gate and router (fluidgate.controllers.runtime.Controller) in "
    "front of the pools; it reads the same controller spec and applies this rule per request"
)


class Target(StrEnum):
    """The stacks `fluidgate export` writes for (the order is the order users see)."""

    VLLM = "vllm"
    SGLANG = "sglang"
    DYNAMO = "dynamo"
    LLMD = "llm-d"
    JSON = "json"
    YAML = "yaml"


class ExportError(Exception):
    """The spec is valid but this stack cannot be configured from it; the message says why."""


@dataclass(frozen=True)
class Unmet:
    """A rule of the plan the stack cannot express natively, and how to get it anyway."""

    rule: str
    detail: str
    remedy: str = RUNTIME_GATE

    def render(self, width: int = 92) -> str:
        """The rule, why the stack lacks it, and the way to get it, wrapped for a text file."""
        def wrap(text: str, first: str, rest: str) -> str:
            return textwrap.fill(text, width, initial_indent=first, subsequent_indent=rest,
                                 break_on_hyphens=False, break_long_words=False)

        return "\n".join([wrap(self.rule, "- ", "  "), wrap(self.detail, "    ", "    "),
                          wrap(f"to get it: {self.remedy}", "    ", "    ")])


@dataclass(frozen=True)
class ExportResult:
    target: Target
    stack: str  # the stack and the version whose sources were checked, e.g. "vLLM 0.33.0"
    files: dict[str, str] = field(default_factory=dict)  # name → text, in display order
    unmet: tuple[Unmet, ...] = ()
