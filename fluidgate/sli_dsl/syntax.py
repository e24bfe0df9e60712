"""The raw syntax tree: what the file says, with positions, before units or names are checked.

Kept separate from `fluidgate.model` so the checker can report every problem it finds with
the exact span the user wrote, and so the typed `Policy` never carries half-checked values.
"""

from __future__ import annotations

from dataclasses import dataclass

from fluidgate.diagnostics import Span


@dataclass(frozen=True, slots=True)
class Quantity:
    value: float
    unit: str | None
    pers: tuple[str, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    arg: str | None
    span: Span
    name_span: Span
    arg_span: Span | None


@dataclass(frozen=True, slots=True)
class Binary:
    op: str
    left: SyntaxExpr
    right: SyntaxExpr
    span: Span


@dataclass(frozen=True, slots=True)
class Negate:
    operand: SyntaxExpr
    span: Span


SyntaxExpr = Quantity | Metric | Binary | Negate


@dataclass(frozen=True, slots=True)
class Assign:
    name: str
    value: SyntaxExpr
    span: Span
    name_span: Span


@dataclass(frozen=True, slots=True)
class PolicyDecl:
    name: str
    span: Span


@dataclass(frozen=True, slots=True)
class IterationBlock:
    assigns: tuple[Assign, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class IterationFrom:
    path: str
    span: Span
    path_span: Span


@dataclass(frozen=True, slots=True)
class ClusterBlock:
    assigns: tuple[Assign, ...]
    iterations: tuple[IterationBlock | IterationFrom, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class PricingBlock:
    mode: str
    mode_span: Span
    assigns: tuple[Assign, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class PriceBlock:
    assigns: tuple[Assign, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class ClassBlock:
    name: str
    name_span: Span
    assigns: tuple[Assign, ...]
    prices: tuple[PriceBlock, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class ClassesFrom:
    """`classes from "table.csv"`: many classes in one columnar file (class_table.py)."""

    path: str
    span: Span
    path_span: Span


@dataclass(frozen=True, slots=True)
class ObjectiveDecl:
    name: str
    span: Span
    name_span: Span


@dataclass(frozen=True, slots=True)
class Constraint:
    soft: bool
    lhs: SyntaxExpr
    op: str
    rhs: SyntaxExpr
    penalty: SyntaxExpr | None
    span: Span


@dataclass(frozen=True, slots=True)
class SloBlock:
    constraints: tuple[Constraint, ...]
    span: Span


TopLevel = (PolicyDecl | ClusterBlock | PricingBlock | ClassBlock | ClassesFrom | ObjectiveDecl
            | SloBlock)


@dataclass(frozen=True, slots=True)
class Document:
    file: str
    text: str
    items: tuple[TopLevel, ...]
