"""A request → its class, by the spec's `classification` block (one place for every consumer).

The gateway classifies live requests and the load generator classifies replayed trace
requests with the same `Classifier`, so a trace is split into classes the way the gateway
would split its requests. The order, each step deciding when it can:

1. the `X-Fluidgate-Class` header names the class outright (an unknown name is refused:
   a client that names a class means that class, and a guess would hide its typo);
2. the rules, in the spec's order: the first whose every condition holds (the body's
   `model`, a header's value, the prompt's length in tokens);
3. the fallback: `nearest` picks the class whose mean (prompt, output) is nearest in log
   space — the grouping `planning/derive.py` makes classes from traces with, so a request
   goes where that grouping would have put it (output is `max_tokens` when the request
   states it, else only the prompt counts); `reject` refuses the request.

Refusals are `Unclassified`, whose message is meant for the client (a 400).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from fluidgate.controllers.spec import CLASS_HEADER, ClassRule, ControllerSpec, Fallback

Header = Callable[[str], str | None]  # a request's header by name (None: absent)
_CHUNK_CELLS = 4_000_000  # requests × classes per block of the vectorised nearest search


class Unclassified(ValueError):
    """A request no class fits; `str()` is the message for the client."""


def _log(tokens: npt.ArrayLike) -> npt.NDArray[np.float64]:
    # a zero-token prompt or output sits with the 1-token ones, as in planning/derive.py
    return np.log(np.maximum(np.asarray(tokens, dtype=np.float64), 1.0))


def _no_header(name: str) -> str | None:
    return None


class Classifier:
    """The spec's classification as a function of a request's facts; see the module."""

    def __init__(self, spec: ControllerSpec) -> None:
        self.names = [c.name for c in spec.classes]
        self._index = {n: i for i, n in enumerate(self.names)}
        self._rules: list[tuple[int, ClassRule]] = [
            (self._index[r.class_], r) for r in spec.classification.rules]
        self.fallback = spec.classification.fallback
        self._prompt = _log([c.prompt for c in spec.classes])
        self._output = _log([c.output for c in spec.classes])

    def _classes(self) -> str:
        return ", ".join(self.names)

    def by_name(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise Unclassified(f"unknown class in {CLASS_HEADER}; classes: "
                               f"{self._classes()}") from None

    def classify(self, prompt: int, output: int | None = None, model: str | None = None,
                 header: Header = _no_header) -> int:
        """The class index of a request with `prompt` tokens, `output` tokens asked for
        (None: not stated), body `model` and headers `header`."""
        named = header(CLASS_HEADER)
        if named is not None:
            return self.by_name(named)
        for index, rule in self._rules:
            if self._matches(rule, prompt, model, header):
                return index
        if self.fallback is Fallback.REJECT:
            raise Unclassified(f"the request matches no class rule of this gateway; name "
                               f"its class in {CLASS_HEADER} ({self._classes()})")
        return self.nearest(prompt, output)

    @staticmethod
    def _matches(rule: ClassRule, prompt: int, model: str | None, header: Header) -> bool:
        if rule.models is not None and model not in rule.models:
            return False
        if rule.header is not None and header(rule.header.name) not in rule.header.values:
            return False
        return rule.prompt_tokens is None or rule.prompt_tokens.holds(prompt)

    def nearest(self, prompt: int, output: int | None = None) -> int:
        """The class whose mean is nearest in log(prompt[, output]); ties: the first."""
        d = (self._prompt - _log(prompt)) ** 2
        if output is not None:
            d = d + (self._output - _log(output)) ** 2
        return int(np.argmin(d))

    def classify_known(self, prompt: npt.ArrayLike, output: npt.ArrayLike
                       ) -> npt.NDArray[np.intp]:
        """Classes of requests known only by their token counts (a replayed trace): the
        rules that look at nothing else, then the nearest class in log(prompt, output)
        whatever the fallback (a trace request has no header to name its class, and
        dropping it would change the traffic being replayed). Equal to `classify` for
        such requests under the `nearest` fallback."""
        p = np.asarray(prompt, dtype=np.float64)
        o = np.asarray(output, dtype=np.float64)
        labels = np.full(p.shape, -1, dtype=np.intp)
        for index, rule in self._rules:
            if rule.models is not None or rule.header is not None:
                continue  # needs a model name or a header a trace does not have
            assert rule.prompt_tokens is not None
            r = rule.prompt_tokens
            hit = labels < 0
            if r.min is not None:
                hit &= p >= r.min
            if r.max is not None:
                hit &= p < r.max
            labels[hit] = index
        rest = np.flatnonzero(labels < 0)
        step = max(1, _CHUNK_CELLS // len(self.names))
        lp, lo = _log(p), _log(o)
        for start in range(0, rest.size, step):
            rows = rest[start:start + step]
            d = ((lp[rows, None] - self._prompt[None, :]) ** 2
                 + (lo[rows, None] - self._output[None, :]) ** 2)
            labels[rows] = np.argmin(d, axis=1)
        return labels
