"""The LP's columns, addressed by one typed index instead of strings such as `"x__0"`.

A `Column` is the pair (Pyomo component, index) exactly as `matrix.compile_matrix` names the
columns it hands to solvers, so the SLO compiler's coefficients, the Pyomo model, the solver's
column order and `explain`'s printout all use the same key without parsing anything.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class Var(StrEnum):
    """Pyomo variable components of the fluid LP (DESIGN.md §2) and the SLO epigraphs."""

    X = "x"  # GPUs busy with class-i prefill, per GPU
    Y_M = "y_m"  # class-i decodes on mixed GPUs, per GPU
    Y_S = "y_s"  # class-i decodes on solo GPUs, per GPU
    Q_P = "q_p"  # class-i requests waiting for prefill, per GPU
    Q_D = "q_d"  # class-i requests waiting for a decode slot, per GPU
    HI_PREFILL = "hi_prefill"  # spread(prefill) epigraph: x_i/w_i ≤ hi
    LO_PREFILL = "lo_prefill"
    HI_DECODE = "hi_decode"  # spread(decode) epigraph: y_s,i/w_i ≤ hi
    LO_DECODE = "lo_decode"


CLASS_VARS: tuple[Var, ...] = (Var.X, Var.Y_M, Var.Y_S, Var.Q_P, Var.Q_D)
# spread pool -> (upper epigraph variable, lower one, the per-class variable it bounds)
SPREAD_VARS: dict[str, tuple[Var, Var, Var]] = {
    "prefill": (Var.HI_PREFILL, Var.LO_PREFILL, Var.X),
    "decode": (Var.HI_DECODE, Var.LO_DECODE, Var.Y_S),
}


class Column(NamedTuple):
    """One LP column: a per-class variable with its class index, or a scalar (index None).

    Equal to (and hashing like) the `(component name, index)` tuples of `CompiledLP.columns`.
    """

    var: Var
    cls_index: int | None = None

    def label(self, class_names: tuple[str, ...] | None = None) -> str:
        """`x[decode_heavy]` with class names, `x[0]` without, `hi_prefill` for a scalar."""
        if self.cls_index is None:
            return self.var.value
        who = class_names[self.cls_index] if class_names is not None else str(self.index)
        return f"{self.var.value}[{who}]"


_VARS: dict[str, Var] = {v.value: v for v in Var}


def column_of(component: str, index: object) -> Column | None:
    """The `Column` of a compiled column `(component, index)`; None for columns that are not
    plan variables (soft-SLO violations)."""
    var = _VARS.get(component)
    if var is None or not (index is None or isinstance(index, int)):
        return None
    return Column(var, index)
