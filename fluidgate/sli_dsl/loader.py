"""The front end's public entry points: text or file → checked `Policy`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fluidgate.diagnostics import Diagnostic, DiagnosticBag, PolicyError, Span
from fluidgate.gcpause import gc_paused
from fluidgate.model import Policy
from fluidgate.reads import InputKind, ReadError, read_input
from fluidgate.sli_dsl.checker import check_document
from fluidgate.sli_dsl.parser import PolicyParser, default_parser


@dataclass(frozen=True)
class CheckedPolicy:
    policy: Policy
    warnings: list[Diagnostic] = field(default_factory=list)


def parse_policy(
    text: str,
    file: str = "<policy>",
    base_dir: Path | None = None,
    parser: PolicyParser | None = None,
) -> CheckedPolicy:
    """Parse and check policy text; raise `PolicyError` carrying every error found."""
    doc = (parser or default_parser()).parse(text, file)
    bag = DiagnosticBag()
    with gc_paused():  # a class table makes a class, a span and a row per line
        policy = check_document(doc, base_dir, bag)
    if bag.errors or policy is None:
        raise PolicyError(bag.items, text, bag.sources)
    return CheckedPolicy(policy, bag.warnings)


def load_policy(path: str | Path, parser: PolicyParser | None = None) -> CheckedPolicy:
    """Read a policy file (bounded, regular files only); relative `iteration from` and
    `classes from` paths resolve next to it."""
    p = Path(path)
    try:
        raw = read_input(path, InputKind.POLICY)
    except ReadError as exc:
        raise PolicyError([Diagnostic(exc.message)]) from None
    try:
        text = raw.decode("utf-8-sig")  # a BOM from a Windows editor is not part of the text
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        span = Span(str(p), line, column, line, column + 1)
        raise PolicyError(
            [Diagnostic(f"'{p}' is not UTF-8 text (byte 0x{raw[exc.start]:02x})", span)],
            raw.decode("utf-8", errors="replace"),
        ) from None
    return parse_policy(text, str(p), p.parent, parser)
