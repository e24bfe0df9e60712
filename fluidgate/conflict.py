"""Why a policy is infeasible, in the policy's own terms: which SLOs conflict and how far each
one would have to move.

A policy can hold several independent conflicts; naming only one of them (and promising that
removing any of its lines fixes the policy) misleads whenever another remains. So a
`Conflict` holds a list of irreducible groups that together cover the infeasibility, and each
line carries the nearest bound at which it stops conflicting, rounded *outward* for display
so the printed number is itself feasible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from fluidgate.diagnostics import Span

DISPLAY_DIGITS = 4  # significant digits of a printed bound: a step of at most 0.1 %
_SNAP = 1e-9  # a value this close (relative) to a display grid point is that point


@dataclass(frozen=True, slots=True)
class ConflictSlo:
    """One SLO of a conflict and the nearest change of it that resolves the conflict.

    `loosen_by` is `s` in the constraint moved to `lhs − rhs ≤ s` (`rhs − lhs ≤ s` for `>=`,
    `lhs − rhs = s` for `==`), in base units; `bound` and `nearest_bound` are the constant
    side before and after, when the constraint has one. Both are None when no bound on this
    line alone resolves the conflict (another conflict that does not involve it remains).
    `unreliable` says why the nearest bound could not be computed reliably (an elastic
    re-solve no solver configuration could verify); then no bound is given either.
    """

    label: str
    span: Span | None
    op: str
    bound: float | None = None
    loosen_by: float | None = None
    nearest_bound: float | None = None
    unit: str = ""
    unit_scale: float = 1.0
    unreliable: str = ""

    def nearest_text(self) -> str:
        """`<label>: nearest feasible bound <value> <unit>`, the value rounded outward."""
        if self.unreliable:
            return (f"{self.label}: the nearest feasible bound could not be computed reliably "
                    f"(a re-solve for it could not be verified: {self.unreliable})")
        if self.loosen_by is None:
            return (f"{self.label}: no bound on this line alone makes the policy feasible "
                    "(relax the other lines of this conflict)")
        unit = f" {self.unit}" if self.unit else ""
        if self.bound is not None and self.nearest_bound is not None:
            value = display_outward(self.nearest_bound / self.unit_scale,
                                    self.nearest_bound - self.bound)
            return f"{self.label}: nearest feasible bound {value}{unit}"
        shift = display_outward(abs(self.loosen_by) / self.unit_scale, 1.0)
        sign = "-" if (self.op == ">=") == (self.loosen_by >= 0) else "+"
        return f"{self.label}: nearest feasible form {self.label} {sign} {shift}{unit}"


@dataclass(frozen=True, slots=True)
class Conflict:
    """Why a policy is infeasible: groups of SLOs that cannot hold together, or the traffic
    itself, when classes without patience need more than the cluster has.

    Each group is irreducible (removing any one of its lines resolves that group); removing
    every named line makes the policy feasible, unless `more` says the search stopped first.
    With several groups, nearest bounds are computed with the other groups' lines set aside
    (`others_set_aside`), and with every unnamed line set aside too when `more`.
    """

    groups: tuple[tuple[ConflictSlo, ...], ...] = ()
    base_infeasible: bool = False
    impatient_classes: tuple[str, ...] = ()
    more: bool = False  # the search stopped at its limit with lines still in conflict
    # why the search could not be verified (a trial no solver configuration could check);
    # then no line is named, rather than a conflict that may be wrong
    unverified: str = ""

    @property
    def items(self) -> tuple[tuple[str, Span | None], ...]:
        """Every conflicting SLO (label, source span), group after group."""
        return tuple((s.label, s.span) for g in self.groups for s in g)

    @property
    def others_set_aside(self) -> bool:
        return len(self.groups) > 1 or self.more


def display_outward(value: float, direction: float) -> str:
    """`value` to `DISPLAY_DIGITS` significant digits, rounded away from the infeasible side
    (up when `direction > 0`, down when `< 0`), without binary-float noise."""
    if value == 0.0 or not math.isfinite(value):
        return f"{value:g}"
    exp = math.floor(math.log10(abs(value))) - (DISPLAY_DIGITS - 1)
    steps = value / 10.0**exp
    nearest = round(steps)
    if abs(steps - nearest) <= _SNAP * abs(steps):
        n = nearest
    else:
        n = math.ceil(steps) if direction > 0 else math.floor(steps)
    text = format(Decimal(n).scaleb(exp), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
