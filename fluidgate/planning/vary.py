"""What a sweep varies: the `--vary SPEC` grammar and how one value changes a policy.

A SPEC is `TARGET VALUES`, read by one strict regular expression per part (never eval):

    TARGET  gpus | rate | rate(CLASS) | price(input) | price(output) | METRIC | METRIC(ARG)
    VALUES  V..V step V  |  V, V, ...
    V       a number with an optional unit (18ms, 2 s, 20%, 0.5/s), or xNUMBER (a scale)

`METRIC` is an SLO metric of the language (`tpot`, `ttft(chat)`, `abandonment(all)`, ...):
every SLO line bounding that metric by a constant gets the new bound; a metric the policy
does not bound is added as `METRIC <= V` (`>=` for `served`, `admitted` and `revenue`).
`rate` and `price` take scales only (`x0.5..x2 step x0.1`): they multiply what the policy
says. `gpus` keeps the cluster-wide traffic and spreads it over the new count (a rate
written per GPU is that share of the declared cluster's traffic), which is what a
capacity question asks.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from enum import StrEnum

from fluidgate.metrics import Metric
from fluidgate.model import Const, MetricRef, Op, Policy, SloConstraint

MAX_POINTS = 10_000


class SpecError(ValueError):
    """A bad SPEC: `column` (1-based) points at the part that is wrong."""

    def __init__(self, spec: str, column: int, message: str) -> None:
        self.spec, self.column, self.message = spec, column, message
        super().__init__(self.render())

    def render(self) -> str:
        return (f"--vary '{self.spec}': column {self.column}: {self.message}\n"
                f"  {self.spec}\n  {' ' * (self.column - 1)}^")


class Kind(StrEnum):
    GPUS = "gpus"
    RATE = "rate"  # scale of arrival rates
    PRICE = "price"  # scale of per-token prices
    SLO = "slo"  # the constant bound of an SLO metric


# unit -> (base units per unit, the display unit it belongs to)
_UNITS: dict[str, float] = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6,
                            "min": 60.0, "%": 0.01, "/s": 1.0, "req/s": 1.0}
_TARGET = re.compile(r"\s*([a-z_]+)(?:\(\s*([A-Za-z_][\w.-]*)\s*\))?\s+")
_VALUE = re.compile(r"\s*(x)?([-+]?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?)\s*"
                    r"(ms|us|µs|min|s|%|/s|req/s)?(?![A-Za-z/%])\s*")
_LOWER = {Metric.SERVED, Metric.ADMITTED, Metric.REVENUE}


@dataclass(frozen=True)
class Vary:
    """One parsed `--vary`: what changes and the values it takes, in base units."""

    text: str
    kind: Kind
    metric: Metric | None
    arg: str | None  # class, pool or price side
    values: tuple[float, ...]
    unit: str  # as the user wrote it, for display
    unit_scale: float  # base units per display unit

    @property
    def label(self) -> str:
        target = self.metric.value if self.metric is not None else self.kind.value
        return f"{target}({self.arg})" if self.arg else target

    def shown(self, value: float) -> str:
        """The value as the user wrote it: `18 ms`, `x1.5`, `300`."""
        if self.kind in (Kind.RATE, Kind.PRICE):
            return f"x{value:g}"
        if self.kind is Kind.GPUS:
            return str(int(value))
        v = value / self.unit_scale
        return f"{round(v, 9):g} {self.unit}".rstrip()


def _value(spec: str, pos: int) -> tuple[bool, float, str, int, int]:
    """(is a scale, number, unit, end, where the value starts)"""
    m = _VALUE.match(spec, pos)
    if m is None or m.end() == pos:
        raise SpecError(spec, pos + 1, "expected a number such as 18ms, 0.5 or x1.5")
    number = float(m.group(2))
    if not math.isfinite(number):
        raise SpecError(spec, m.start(2) + 1, "the number is not finite")
    begin = m.start(1) if m.group(1) is not None else m.start(2)
    return m.group(1) is not None, number, m.group(3) or "", m.end(), begin


def parse_vary(spec: str, policy: Policy) -> Vary:
    """Parse one SPEC against the policy it varies; `SpecError` says where it is wrong."""
    m = _TARGET.match(spec)
    if m is None:
        raise SpecError(spec, 1, "expected a target (gpus, rate(CLASS), price(input), tpot, "
                                 "ttft(CLASS), ...) followed by values")
    name, arg = m.group(1), m.group(2)
    kind, metric = _target(spec, name, arg, policy)
    pos = m.end()
    raw: list[tuple[bool, float, str, int]] = []
    start = _value(spec, pos)
    raw.append((*start[:3], start[4]))
    pos = start[3]
    if spec.startswith("..", pos):
        stop = _value(spec, pos + 2)
        raw.append((*stop[:3], stop[4]))
        pos = stop[3]
        if not spec.startswith("step", pos):
            raise SpecError(spec, pos + 1, "expected 'step V' after the range")
        step = _value(spec, pos + 4)
        raw.append((*step[:3], step[4]))
        pos = step[3]
    else:
        while spec.startswith(",", pos):
            v = _value(spec, pos + 1)
            raw.append((*v[:3], v[4]))
            pos = v[3]
    if pos != len(spec):
        raise SpecError(spec, pos + 1, "unexpected text; write 'A..B step S' or 'A, B, C'")
    for is_scale, _, unit, at in raw:
        if (kind in (Kind.RATE, Kind.PRICE)) != is_scale:
            need = "a scale such as x1.5" if kind in (Kind.RATE, Kind.PRICE) else "a plain value"
            raise SpecError(spec, at + 1, f"{name} takes {need}")
        if kind is not Kind.SLO and unit:
            raise SpecError(spec, at + 1, f"{name} takes no unit")
        if unit != raw[0][2]:
            raise SpecError(spec, at + 1, "write every value in the same unit")
    unit = raw[0][2]
    scale = _UNITS[unit]
    numbers = [v for _, v, _, _ in raw]
    if len(raw) == 3 and spec.find("..") >= 0:
        values = _steps(spec, raw[2][3], *numbers)
    else:
        values = numbers
    # 15 digits: 18 ms is 0.018, not 0.018000000000000002
    base = tuple(float(f"{x * scale:.15g}") for x in values)
    for x, (_, _, _, at) in zip(base, raw, strict=False):
        _check_value(spec, at, kind, x)
    for x in base:
        _check_value(spec, raw[0][3], kind, x)
    return Vary(spec, kind, metric, arg, base, unit, scale)


def _steps(spec: str, step_at: int, a: float, b: float, step: float) -> list[float]:
    if step <= 0:
        raise SpecError(spec, step_at + 1, "the step must be positive")
    span = b - a
    if span < 0:
        raise SpecError(spec, 1 + spec.find(".."), "the range runs downwards; write A..B "
                                                    "with A ≤ B")
    count = round(span / step)
    if abs(count * step - span) > 1e-9 * max(abs(a), abs(b), step):
        raise SpecError(spec, step_at + 1, f"the step {step:g} does not divide {a:g}..{b:g}")
    if count + 1 > MAX_POINTS:
        raise SpecError(spec, step_at + 1, f"{count + 1} points; at most {MAX_POINTS:,}")
    return [a + i * step for i in range(count)] + [b]


def _check_value(spec: str, at: int, kind: Kind, v: float) -> None:
    if kind is Kind.GPUS and (v != int(v) or not 1 <= v <= 10_000_000):
        raise SpecError(spec, at + 1, "a GPU count is a whole number from 1 to 10,000,000")
    if kind in (Kind.RATE, Kind.PRICE) and v < 0:
        raise SpecError(spec, at + 1, "a scale is not negative")


def _target(spec: str, name: str, arg: str | None, policy: Policy) -> tuple[Kind, Metric | None]:
    classes = set(policy.class_names)
    if name == "gpus":
        if arg is not None:
            raise SpecError(spec, 5, "gpus takes no argument")
        return Kind.GPUS, None
    if name == "price":
        if arg not in ("input", "output"):
            raise SpecError(spec, 1, "write price(input) or price(output)")
        return Kind.PRICE, None
    if name == "rate" and (arg is None or arg == "all" or arg in classes):
        return Kind.RATE, None
    try:
        metric = Metric(name)
    except ValueError:
        raise SpecError(spec, 1, f"unknown target '{name}'; vary gpus, rate(CLASS), "
                                 "price(input|output) or an SLO metric (tpot, ttft(CLASS), "
                                 "abandonment(CLASS), wait(CLASS), ...)") from None
    if metric is Metric.RATE:
        raise SpecError(spec, 6, f"no class '{arg}' in the policy")
    if arg is not None and arg != "all" and metric is not Metric.SPREAD and arg not in classes:
        raise SpecError(spec, len(name) + 2, f"no class '{arg}' in the policy")
    return Kind.SLO, metric


def _matches(slo: SloConstraint, v: Vary) -> bool:
    lhs = slo.lhs
    if not isinstance(lhs, MetricRef) or not isinstance(slo.rhs, Const) or slo.soft:
        return False
    if v.metric is None or lhs.name != v.metric.value:
        return False
    return v.arg == "all" or lhs.arg == v.arg


def apply_vary(policy: Policy, v: Vary, value: float) -> Policy:
    """The policy with one varied value in place."""
    if v.kind is Kind.GPUS:
        return with_gpus(policy, int(value))
    if v.kind is Kind.RATE:
        return dataclasses.replace(policy, classes=tuple(
            dataclasses.replace(c, rate=c.rate * value) if v.arg in (None, "all", c.name)
            else c for c in policy.classes))
    if v.kind is Kind.PRICE:
        field_name = "price_input" if v.arg == "input" else "price_output"
        return dataclasses.replace(policy, classes=tuple(
            dataclasses.replace(c, **{field_name: getattr(c, field_name) * value})
            for c in policy.classes))
    slos = list(policy.slos)
    hits = [k for k, s in enumerate(slos) if _matches(s, v)]
    for k in hits:
        s = slos[k]
        assert isinstance(s.rhs, Const)
        slos[k] = dataclasses.replace(s, rhs=Const(value, s.rhs.span),
                                      label=_label(s.lhs, s.op, v, value))
    if not hits:
        slos.extend(_added(policy, v, value))
    return dataclasses.replace(policy, slos=tuple(slos))


def _label(lhs: object, op: str, v: Vary, value: float) -> str:
    assert isinstance(lhs, MetricRef)
    target = f"{lhs.name}({lhs.arg})" if lhs.arg is not None else lhs.name
    return f"{target} {op} {v.shown(value)}"


def _added(policy: Policy, v: Vary, value: float) -> list[SloConstraint]:
    """The SLO lines a sweep adds when the policy does not bound the metric."""
    assert v.metric is not None
    op: Op = ">=" if v.metric in _LOWER else "<="
    args: list[str | None] = ([*policy.class_names] if v.arg == "all" else [v.arg])
    out = []
    for arg in args:
        lhs = MetricRef(v.metric.value, arg)
        label = _label(lhs, op, v, value)
        out.append(SloConstraint(label=label, lhs=lhs, op=op, rhs=Const(value), text=label,
                                 unit=v.unit, unit_scale=v.unit_scale))
    return out


def with_gpus(policy: Policy, gpus: int) -> Policy:
    """The same cluster-wide traffic on `gpus` GPUs: per-GPU rates scale by old/new."""
    factor = policy.cluster.gpus / gpus
    return dataclasses.replace(
        policy, cluster=dataclasses.replace(policy.cluster, gpus=gpus),
        classes=tuple(dataclasses.replace(c, rate=c.rate * factor) for c in policy.classes))


def scale_rates(policy: Policy, factor: float) -> Policy:
    """Every class's traffic times `factor` (a growth forecast)."""
    return dataclasses.replace(policy, classes=tuple(
        dataclasses.replace(c, rate=c.rate * factor) for c in policy.classes))
