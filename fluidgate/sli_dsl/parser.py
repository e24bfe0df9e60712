"""Text → `Document`, with syntax errors worded for people rather than for parser authors.

The grammar is the packaged `policy.lark`; the LALR tables are built once per `PolicyParser`
(construct one and reuse it when parsing many files).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from lark import Lark, Token, Tree, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)
from lark.visitors import Transformer_NonRecursive

from fluidgate.diagnostics import Diagnostic, PolicyError, Span
from fluidgate.gcpause import gc_paused
from fluidgate.sli_dsl import syntax as sx

_TERMINAL_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": 'a string in double quotes ("...")',
    "UNIT": "a unit",
    "COMPARE": "a comparison ('<=', '>=' or '==')",
    "_SEP": "the end of the statement (a new line or ';')",
    "$END": "the end of the file",
    "SOFT": "'soft'",
}


_CHARACTER_HINTS = {
    '"': 'a string must be closed with \'"\' on the same line',
    "<": "comparisons are written '<=', '>=' or '=='",
    ">": "comparisons are written '<=', '>=' or '=='",
    "=": "comparisons are written '<=', '>=' or '=='",
    "!": "the language has no '!='; use '<=', '>=' or '=='",
}


def _describe_expected(parser: Lark, expected: set[str]) -> str:
    words: set[str] = set()
    by_name = {t.name: t for t in parser.terminals}
    for name in expected:
        if name in _TERMINAL_WORDS:
            words.add(_TERMINAL_WORDS[name])
            continue
        term = by_name.get(name)
        if term is not None and term.pattern.type == "str":
            words.add(f"'{term.pattern.value}'")
        else:
            words.add(name.lower())
    ordered = sorted(words, key=lambda w: (not w.startswith("'"), w))
    if len(ordered) == 1:
        return ordered[0]
    return ", ".join(ordered[:-1]) + " or " + ordered[-1]


def _describe_token(token: Token) -> str:
    if token.type == "$END":
        return "end of file"
    if token.type == "_SEP":
        return "end of line" if "\n" in token.value else "';'"
    return f"'{token.value}'"


# The parse keeps every token with its position until the syntax tree is built: measured at
# 0.5-1.1 KB per token (2026-12-02: 786,000 tokens of class blocks and SLOs took 424 MB,
# 880,000 tokens of `+ 1 - 1 ...` took 951 MB). The budget holds a policy's memory to a few
# hundred MB whatever its shape; 10,000 inline class blocks (~300,000 tokens) still fit, and
# larger policies belong in a class table (`classes from "file.csv"`), read without Lark.
TOKEN_BUDGET = 400_000
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9][0-9.eE]*|\S")


def _past_token_budget(text: str) -> int | None:
    """Offset of the first token past `TOKEN_BUDGET`, or None; a cheap over-count of tokens."""
    if len(text) <= TOKEN_BUDGET:  # every token takes at least one character
        return None
    for count, match in enumerate(_TOKEN.finditer(text), start=1):
        if count > TOKEN_BUDGET:
            return match.start()
    return None


def _token_budget_diagnostic(text: str, file: str, offset: int) -> Diagnostic:
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return Diagnostic(
        f"the policy has more than {TOKEN_BUDGET:,} words, numbers and symbols; "
        "fluidgate stops here to keep its memory bounded",
        Span(file, line, column, line, column + 1),
        hint='give many classes as a class table: classes from "classes.csv"',
    )


class PolicyParser:
    """Parses policy text into the raw syntax tree; raises `PolicyError` on bad syntax."""

    @cached_property
    def _lark(self) -> Lark:
        grammar = resources.files("fluidgate.sli_dsl").joinpath("policy.lark").read_text("utf-8")
        return Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=False,
                    cache=_table_cache())

    def parse(self, text: str, file: str = "<policy>") -> sx.Document:
        over = _past_token_budget(text)
        if over is not None:
            raise PolicyError([_token_budget_diagnostic(text, file, over)], text)
        with gc_paused():
            try:
                tree = self._lark.parse(text)
            except UnexpectedInput as exc:
                raise PolicyError([self._syntax_diagnostic(exc, text, file)], text) from None
            try:
                items = _ToSyntax(file).transform(tree)
            except VisitError as exc:
                if not isinstance(exc.orig_exc, _SyntaxRefusal):
                    raise
                raise PolicyError([exc.orig_exc.diagnostic], text) from None
        return sx.Document(file=file, text=text, items=tuple(items))

    def _syntax_diagnostic(self, exc: UnexpectedInput, text: str, file: str) -> Diagnostic:
        hint: str | None = None
        line = max(1, exc.line if isinstance(exc.line, int) and exc.line > 0 else 1)
        column = max(1, exc.column if isinstance(exc.column, int) and exc.column > 0 else 1)
        width = 1
        if isinstance(exc, UnexpectedToken):
            tok = exc.token
            if tok.type == "$END":
                line, column = _end_position(text)
            else:
                width = max(1, len(tok.value.split("\n")[0]))
            accepts = set(getattr(exc, "accepts", None) or exc.expected)
            message = (
                f"unexpected {_describe_token(tok)}; expected "
                f"{_describe_expected(self._lark, accepts)}"
            )
        elif isinstance(exc, UnexpectedCharacters):
            pos = exc.pos_in_stream if isinstance(exc.pos_in_stream, int) else len(text)
            char = text[pos] if pos < len(text) else ""
            allowed = set(exc.allowed or ())
            message = f"unexpected character {char!r}"
            if allowed:
                message += f"; expected {_describe_expected(self._lark, allowed)}"
            hint = _CHARACTER_HINTS.get(char)
            if char.isnumeric():  # '５' or '٣' would otherwise be read as a number
                width = 1
                while pos + width < len(text) and text[pos + width].isnumeric():
                    width += 1
                message = (f"{text[pos:pos + width]!r} is not a number: numbers are written "
                           "with the ASCII digits 0-9")
                hint = None
        elif isinstance(exc, UnexpectedEOF):
            line, column = _end_position(text)
            message = (
                "unexpected end of file; expected "
                f"{_describe_expected(self._lark, set(exc.expected))}"
            )
        else:  # pragma: no cover - lark has no other UnexpectedInput subclasses
            message = "syntax error"
        percentile = _percentile_on_line(text, line)
        if percentile is not None:
            column, width = percentile
            return _percentile_diagnostic(Span(file, line, column, line, column + width))
        return Diagnostic(message, Span(file, line, column, line, column + width), hint=hint)


def _table_cache() -> str | bool:
    """Where Lark keeps the built LALR tables between processes (False: build every time).

    Building them is most of a cold `fluidgate check`'s parsing (about 90 ms); loading them
    takes about 10. Lark keys the file by a hash of the grammar, its options and its own
    version and rebuilds it when any changes, so a stale table is never used; it lives in
    the user's own cache (`$XDG_CACHE_HOME`, default `~/.cache`) rather than a shared
    temporary directory, because Lark loads it with pickle.
    """
    import lark

    try:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        folder = base / "fluidgate" / "lark"
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, RuntimeError):  # no or read-only home: parsing works, only slower
        return False
    return str(folder / f"policy-{lark.__version__}.tables")


@cache
def default_parser() -> PolicyParser:
    """One parser per process: building the LALR tables costs 60-80 ms, and a built parser
    is never modified, so sharing it is memoisation rather than shared state."""
    return PolicyParser()


# Words that ask for a percentile: p99, p99.9, P95, percentile, quantile, median.
_PERCENTILE = re.compile(r"(?i)\b(?:p\d+(?:\.\d+)?|percentile|quantile|median)\b")
_PERCENTILE_NAME = re.compile(r"(?i)p\d+|percentile|quantile|median")


def _percentile_on_line(text: str, line: int) -> tuple[int, int] | None:
    """Column and width of a percentile word on a line with a syntax error, if any.

    `p99 tpot <= 30 ms` and `percentile(tpot, 99)` fail to parse; the error the parser
    would give ("unexpected 'tpot'") hides the real problem. A class named like one
    (`class p99 {`, `ttft(p99)`) is left alone."""
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        return None
    src = lines[line - 1].split("#", 1)[0]
    for m in _PERCENTILE.finditer(src):
        before = src[: m.start()].rstrip()
        if before.endswith(("(", "class")) or '"' in before:
            continue
        return m.start() + 1, m.end() - m.start()
    return None


def _percentile_diagnostic(span: Span) -> Diagnostic:
    return Diagnostic(
        "SLOs bound means, not percentiles: the fluid model predicts the mean TTFT, TPOT "
        "and abandonment of each class, so a p99, p95 or other percentile cannot be "
        "expressed", span,
        hint="bound the mean instead (e.g. 'tpot <= 30 ms') and leave headroom for the "
             "tail; see docs/first-policy.md on means versus percentiles")


def _end_position(text: str) -> tuple[int, int]:
    lines = text.split("\n")
    while len(lines) > 1 and not lines[-1].strip():
        lines.pop()
    return len(lines), len(lines[-1]) + 1


class _BadEscape(Exception):
    def __init__(self, offset: int, char: str) -> None:
        self.offset, self.char = offset, char


def _unescape(literal: str) -> str:
    """Undo the two escapes the language has (`\\"` and `\\\\`); never evaluates the text.

    Any other backslash is an error rather than silently dropped: `"C:\\data"` would
    otherwise lose its separators without a word.
    """
    body = literal[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        if body[i] == "\\":
            nxt = body[i + 1] if i + 1 < len(body) else ""
            if nxt not in ('"', "\\"):
                raise _BadEscape(i + 1, nxt)
            out.append(nxt)
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


class _SyntaxRefusal(Exception):
    """Raised inside the transformer for text that parses but must not go further."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        self.diagnostic = diagnostic


# Deeper expressions are refused (positioned, exit 2) rather than walked: every later stage
# (units, SLO typing, sympy) walks expressions recursively. Runs of '+' and '-' are built as
# balanced trees, so a sum of a million terms is about 35 levels; only parentheses, unary
# minus and products chained this far reach the limit.
MAX_EXPRESSION_DEPTH = 100
_LEFT_DEEP_RUN = 16  # runs this short keep the left-to-right tree (and rounding) they always had


@dataclass
class _Chain:
    """A run of terms joined by '+' and '-', collected while parsing and balanced once whole."""

    terms: list[tuple[bool, sx.SyntaxExpr]]  # (subtracted, term)


def _join(op: str, left: sx.SyntaxExpr, right: sx.SyntaxExpr) -> sx.Binary:
    a, b = left.span, right.span
    return sx.Binary(op, left, right, Span(a.file, a.line, a.column, b.end_line, b.end_column))


def _build(terms: list[tuple[bool, sx.SyntaxExpr]], lo: int, hi: int, flip: bool) -> sx.SyntaxExpr:
    """Σ ±terms[lo:hi] with every sign inverted when `flip`; terms[lo] counts as added.

    Recursion depth is log2 of the run length, so it cannot be exhausted."""
    if hi - lo <= _LEFT_DEEP_RUN:
        acc = terms[lo][1]
        for negative, term in terms[lo + 1:hi]:
            acc = _join("-" if negative != flip else "+", acc, term)
        return acc
    mid = (lo + hi) // 2
    left = _build(terms, lo, mid, flip)
    subtract = terms[mid][0] != flip
    right = _build(terms, mid, hi, flip != subtract)
    return _join("-" if subtract else "+", left, right)


def _depth(expr: sx.SyntaxExpr) -> int:
    """Nesting depth, walked with an explicit stack."""
    deepest = 0
    stack: list[tuple[sx.SyntaxExpr, int]] = [(expr, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(node, sx.Binary):
            stack.append((node.left, level + 1))
            stack.append((node.right, level + 1))
        elif isinstance(node, sx.Negate):
            stack.append((node.operand, level + 1))
    return deepest


class _ToSyntax(Transformer_NonRecursive[Token, Any]):
    """Lark tree → syntax tree; non-recursive, so a sum of thousands of terms cannot
    overflow the interpreter's stack."""

    def __init__(self, file: str) -> None:
        super().__init__()
        self._file = file

    def _span(self, meta: Any) -> Span:
        return Span(self._file, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tspan(self, tok: Token) -> Span:
        return Span(
            self._file,
            tok.line or 1,
            tok.column or 1,
            tok.end_line or tok.line or 1,
            tok.end_column or (tok.column or 1) + len(tok.value),
        )

    def start(self, children: list[Any]) -> list[Any]:
        return children

    def _string(self, tok: Token) -> str:
        try:
            return _unescape(tok.value)
        except _BadEscape as exc:
            line, col = tok.line or 1, (tok.column or 1) + exc.offset
            raise _SyntaxRefusal(Diagnostic(
                f"unknown escape '\\{exc.char}' in a string; only '\\\"' and '\\\\' are "
                "escapes", Span(self._file, line, col, line, col + 2),
                hint="write a backslash as '\\\\'")) from None

    def _expr(self, item: Any) -> sx.SyntaxExpr:
        """A finished operand: a pending run of sums becomes a balanced tree."""
        if isinstance(item, _Chain):
            return _build(item.terms, 0, len(item.terms), False)
        expr: sx.SyntaxExpr = item
        return expr

    def _whole(self, item: Any) -> sx.SyntaxExpr:
        """A whole expression (a value, a side of a constraint, a penalty), depth-checked."""
        expr = self._expr(item)
        depth = _depth(expr)
        if depth > MAX_EXPRESSION_DEPTH:
            raise _SyntaxRefusal(Diagnostic(
                f"this expression nests {depth} levels deep; fluidgate reads at most "
                f"{MAX_EXPRESSION_DEPTH} (each unary minus, product or quotient inside another "
                "counts; long sums do not)", expr.span,
                hint="write the value with fewer nested factors"))
        return expr

    @v_args(meta=True)
    def policy_decl(self, meta: Any, ch: list[Token]) -> sx.PolicyDecl:
        return sx.PolicyDecl(self._string(ch[0]), self._span(meta))

    @v_args(meta=True)
    def cluster(self, meta: Any, ch: list[Any]) -> sx.ClusterBlock:
        assigns = tuple(c for c in ch if isinstance(c, sx.Assign))
        its = tuple(c for c in ch if isinstance(c, sx.IterationBlock | sx.IterationFrom))
        return sx.ClusterBlock(assigns, its, self._span(meta))

    @v_args(meta=True)
    def iteration_block(self, meta: Any, ch: list[sx.Assign]) -> sx.IterationBlock:
        return sx.IterationBlock(tuple(ch), self._span(meta))

    @v_args(meta=True)
    def iteration_from(self, meta: Any, ch: list[Token]) -> sx.IterationFrom:
        return sx.IterationFrom(self._string(ch[0]), self._span(meta), self._tspan(ch[0]))

    @v_args(meta=True)
    def pricing(self, meta: Any, ch: list[Any]) -> sx.PricingBlock:
        mode = ch[0]
        return sx.PricingBlock(mode.value, self._tspan(mode), tuple(ch[1:]), self._span(meta))

    @v_args(meta=True)
    def klass(self, meta: Any, ch: list[Any]) -> sx.ClassBlock:
        name = ch[0]
        assigns = tuple(c for c in ch[1:] if isinstance(c, sx.Assign))
        prices = tuple(c for c in ch[1:] if isinstance(c, sx.PriceBlock))
        return sx.ClassBlock(name.value, self._tspan(name), assigns, prices, self._span(meta))

    @v_args(meta=True)
    def classes_from(self, meta: Any, ch: list[Token]) -> sx.ClassesFrom:
        return sx.ClassesFrom(self._string(ch[0]), self._span(meta), self._tspan(ch[0]))

    @v_args(meta=True)
    def price_block(self, meta: Any, ch: list[sx.Assign]) -> sx.PriceBlock:
        return sx.PriceBlock(tuple(ch), self._span(meta))

    @v_args(meta=True)
    def objective(self, meta: Any, ch: list[Token]) -> sx.ObjectiveDecl:
        return sx.ObjectiveDecl(ch[0].value, self._span(meta), self._tspan(ch[0]))

    @v_args(meta=True)
    def slo(self, meta: Any, ch: list[sx.Constraint]) -> sx.SloBlock:
        return sx.SloBlock(tuple(ch), self._span(meta))

    @v_args(meta=True)
    def constraint(self, meta: Any, ch: list[Any]) -> sx.Constraint:
        soft = isinstance(ch[0], Token) and ch[0].type == "SOFT"
        rest = ch[1:] if soft else ch
        lhs, op, rhs = self._whole(rest[0]), rest[1], self._whole(rest[2])
        penalty = rest[3] if len(rest) > 3 else None
        return sx.Constraint(soft, lhs, op.value, rhs, penalty, self._span(meta))

    def penalty(self, ch: list[Any]) -> sx.SyntaxExpr:
        return self._whole(ch[0])

    @v_args(meta=True)
    def assign(self, meta: Any, ch: list[Any]) -> sx.Assign:
        return sx.Assign(ch[0].value, self._whole(ch[1]), self._span(meta), self._tspan(ch[0]))

    def _binary(self, op: str, meta: Any, ch: list[Any]) -> sx.Binary:
        return sx.Binary(op, self._expr(ch[0]), self._expr(ch[1]), self._span(meta))

    def _extend(self, ch: list[Any], negative: bool) -> _Chain:
        left = ch[0] if isinstance(ch[0], _Chain) else _Chain([(False, ch[0])])
        left.terms.append((negative, self._expr(ch[1])))
        return left

    def add(self, ch: list[Any]) -> _Chain:
        return self._extend(ch, False)

    def sub(self, ch: list[Any]) -> _Chain:
        return self._extend(ch, True)

    @v_args(meta=True)
    def mul(self, meta: Any, ch: list[Any]) -> sx.Binary:
        return self._binary("*", meta, ch)

    @v_args(meta=True)
    def div(self, meta: Any, ch: list[Any]) -> sx.Binary:
        return self._binary("/", meta, ch)

    @v_args(meta=True)
    def neg(self, meta: Any, ch: list[Any]) -> sx.Negate:
        return sx.Negate(self._expr(ch[0]), self._span(meta))

    @v_args(meta=True)
    def quantity(self, meta: Any, ch: list[Any]) -> sx.Quantity:
        number = ch[0]
        unit = next((c.value for c in ch[1:] if isinstance(c, Token) and c.type == "UNIT"), None)
        pers = tuple(c for c in ch[1:] if isinstance(c, str) and not isinstance(c, Token))
        return sx.Quantity(float(number.value), unit, pers, self._span(meta))

    def per(self, ch: list[Token]) -> str:
        return str(ch[0].value)

    @v_args(meta=True)
    def metric(self, meta: Any, ch: list[Token]) -> sx.Metric:
        name = ch[0]
        arg = ch[1] if len(ch) > 1 else None
        if _PERCENTILE_NAME.fullmatch(name.value):
            raise _SyntaxRefusal(_percentile_diagnostic(self._tspan(name)))
        return sx.Metric(
            name.value,
            arg.value if arg is not None else None,
            self._span(meta),
            self._tspan(name),
            self._tspan(arg) if arg is not None else None,
        )

    def __default__(self, data: Any, children: Any, meta: Any) -> Any:  # pragma: no cover
        return Tree(data, children, meta)
