"""Units and dimensions of the policy language.

A dimension is a vector of exponents over (time, tokens, requests, money); units are scale
factors onto seconds, tokens, requests and money. Keeping dimensions as exponents (rather than
a fixed list of kinds) lets the checker type any product or ratio a user writes and name both
sides of a mismatch in words.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Dim:
    time: int = 0
    token: int = 0
    request: int = 0
    money: int = 0

    def __mul__(self, other: Dim) -> Dim:
        return Dim(
            self.time + other.time,
            self.token + other.token,
            self.request + other.request,
            self.money + other.money,
        )

    def __truediv__(self, other: Dim) -> Dim:
        return Dim(
            self.time - other.time,
            self.token - other.token,
            self.request - other.request,
            self.money - other.money,
        )

    @property
    def is_dimensionless(self) -> bool:
        return self == NUMBER

    def describe(self) -> str:
        """Name a dimension the way the language reference does."""
        named = _NAMES.get(self)
        if named:
            return named
        num = [(n, e) for n, e in self._parts() if e > 0]
        den = [(n, -e) for n, e in self._parts() if e < 0]

        def fmt(parts: list[tuple[str, int]]) -> str:
            return "·".join(n if e == 1 else f"{n}^{e}" for n, e in parts)

        top = fmt(num) or "1"
        return f"{top}/{fmt(den)}" if den else top

    def _parts(self) -> list[tuple[str, int]]:
        return [
            ("time", self.time),
            ("tokens", self.token),
            ("requests", self.request),
            ("money", self.money),
        ]


NUMBER = Dim()
TIME = Dim(time=1)
TOKENS = Dim(token=1)
RATE = Dim(request=1, time=-1)
TIME_PER_TOKEN = Dim(time=1, token=-1)
MONEY = Dim(money=1)
MONEY_PER_TOKEN = Dim(money=1, token=-1)
MONEY_PER_REQUEST = Dim(money=1, request=-1)
MONEY_RATE = Dim(money=1, time=-1)

_NAMES = {
    NUMBER: "a plain number (fraction)",
    TIME: "a time",
    TOKENS: "a token count",
    RATE: "a rate (requests per time)",
    TIME_PER_TOKEN: "a time per token",
    MONEY: "money",
    MONEY_PER_TOKEN: "money per token",
    MONEY_PER_REQUEST: "money per request",
    MONEY_RATE: "money per time",
}

# unit spelling -> (scale onto base units, dimension)
UNITS: dict[str, tuple[float, Dim]] = {
    "us": (1e-6, TIME),
    "ms": (1e-3, TIME),
    "s": (1.0, TIME),
    "min": (60.0, TIME),
    "h": (3600.0, TIME),
    "token": (1.0, TOKENS),
    "tokens": (1.0, TOKENS),
    "ktok": (1e3, TOKENS),
    "Mtok": (1e6, TOKENS),
    "/s": (1.0, RATE),
    "/min": (1.0 / 60.0, RATE),
    "/h": (1.0 / 3600.0, RATE),
    "%": (0.01, NUMBER),
    "us/token": (1e-6, TIME_PER_TOKEN),
    "us/tokens": (1e-6, TIME_PER_TOKEN),
    "ms/token": (1e-3, TIME_PER_TOKEN),
    "ms/tokens": (1e-3, TIME_PER_TOKEN),
    "s/token": (1.0, TIME_PER_TOKEN),
    "s/tokens": (1.0, TIME_PER_TOKEN),
}

# `per X` after a bare number makes money per X (a price); after a rate, `per gpu` scales it.
PER_MONEY: dict[str, tuple[float, Dim]] = {
    "token": (1.0, MONEY_PER_TOKEN),
    "ktok": (1e-3, MONEY_PER_TOKEN),
    "Mtok": (1e-6, MONEY_PER_TOKEN),
    "request": (1.0, MONEY_PER_REQUEST),
    "s": (1.0, MONEY_RATE),
    "min": (1.0 / 60.0, MONEY_RATE),
    "h": (1.0 / 3600.0, MONEY_RATE),
}
PER_WORDS = (*PER_MONEY, "gpu")


@dataclass(frozen=True, slots=True)
class Value:
    """A literal after unit normalisation; `per_gpu` marks a rate or money given per GPU."""

    value: float
    dim: Dim
    per_gpu: bool = False
