"""A trace → K traffic classes: k-means in log(prompt), log(output), group means, rates.

Token counts in real traces span three or four decades, and what matters to the LP is the
ratio of prompt to output work, so requests are grouped in log space (where a 100-token and
a 200-token prompt are as far apart as 1,000 and 2,000). Each class then carries the *mean*
prompt and output of its group, not a centroid of the logs, so the trace's token totals,
and with them the load the LP sees, are preserved exactly; the class's rate is its share of
the requests over the trace's span. The grouping is scipy's `kmeans2` (k-means++ seeding)
with a seeded Generator, so the same trace, K and seed give the same table everywhere.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fluidgate.planning.traces import Floats, Trace

MAX_K = 100_000
KMEANS_ITERATIONS = 50


@dataclass(frozen=True)
class DerivedClass:
    """One group of requests; `rate` is requests/s cluster-wide over the trace's span."""

    name: str
    requests: int
    rate: float
    prompt: float
    output: float
    patience: float | None


@dataclass(frozen=True)
class Derivation:
    trace: Trace
    classes: tuple[DerivedClass, ...]
    labels: npt.NDArray[np.intp]  # the class index of each request
    seed: int
    finest: bool  # every distinct (prompt, output) pair is its own class

    def token_error(self) -> tuple[float, float]:
        """Σ|tokens − class mean| / Σ tokens for prompts and outputs: how much of the
        trace's token count the class means misplace, request by request."""
        out = []
        for values, means in ((self.trace.prompt, [c.prompt for c in self.classes]),
                              (self.trace.output, [c.output for c in self.classes])):
            total = float(values.sum())
            spread = float(np.abs(values - np.asarray(means)[self.labels]).sum())
            out.append(spread / total if total > 0 else 0.0)
        return out[0], out[1]


def _points(trace: Trace) -> Floats:
    # a zero-token prompt or output sits with the 1-token ones (log 0 has no place)
    return np.column_stack([np.log(np.maximum(trace.prompt, 1.0)),
                            np.log(np.maximum(trace.output, 1.0))])


def derive_classes(trace: Trace, k: int, seed: int = 0,
                   patience: float | None = None) -> Derivation:
    """K classes (fewer when the trace has fewer distinct (prompt, output) pairs, or when
    k-means leaves a group empty)."""
    if not 1 <= k <= MAX_K:
        raise ValueError(f"K must be between 1 and {MAX_K:,}, not {k}")
    points = _points(trace)
    distinct, inverse = np.unique(points, axis=0, return_inverse=True)
    if k >= len(distinct):
        labels = inverse.reshape(-1).astype(np.intp)
        finest = True
    else:
        from scipy.cluster.vq import kmeans2

        with warnings.catch_warnings():  # an empty group is dropped below, not warned about
            warnings.simplefilter("ignore")
            _, raw = kmeans2(points, k, iter=KMEANS_ITERATIONS, minit="++",
                             seed=np.random.default_rng(seed), missing="warn")
        labels = np.asarray(raw, dtype=np.intp)
        finest = False
    return _groups(trace, labels, seed, finest, patience)


def _groups(trace: Trace, labels: npt.NDArray[np.intp], seed: int, finest: bool,
            patience: float | None) -> Derivation:
    used, labels = np.unique(labels, return_inverse=True)
    labels = labels.reshape(-1)
    n = len(used)
    counts = np.bincount(labels, minlength=n)
    prompt = np.bincount(labels, weights=trace.prompt, minlength=n) / counts
    output = np.bincount(labels, weights=trace.output, minlength=n) / counts
    patiences: list[float | None] = [patience] * n
    if trace.patience is not None:
        means = np.bincount(labels, weights=trace.patience, minlength=n) / counts
        patiences = [float(p) for p in means]
    order = np.lexsort((output, prompt))  # names follow prompt length, then output
    rank = np.empty(n, dtype=np.intp)
    rank[order] = np.arange(n)
    span = trace.span
    width = len(str(n))
    classes = tuple(
        DerivedClass(name=f"c{j + 1:0{width}d}", requests=int(counts[i]),
                     rate=float(counts[i]) / span, prompt=float(prompt[i]),
                     output=float(output[i]), patience=patiences[i])
        for j, i in enumerate(order))
    return Derivation(trace, classes, rank[labels], seed, finest)


def table_text(d: Derivation, gpus: int | None, comments: list[str]) -> str:
    """The class table `classes from` reads; numbers are written to round-trip exactly."""
    unit = "/s per gpu" if gpus else "/s"
    lines = [f"# {c}" for c in comments]
    lines.append(f"name,rate[{unit}],prompt[tokens],output[tokens],patience[s]")
    for c in d.classes:
        rate = c.rate / gpus if gpus else c.rate
        patience = "" if c.patience is None else repr(c.patience)
        lines.append(f"{c.name},{rate!r},{c.prompt!r},{c.output!r},{patience}")
    return "\n".join(lines) + "\n"


def policy_text(template: str, d: Derivation, gpus: int | None) -> str:
    """The template policy with the derived classes appended as inline blocks (the same LP
    as `classes from` the table: tests/test_class_table.py)."""
    blocks = []
    for c in d.classes:
        rate = f"{c.rate / gpus!r} /s per gpu" if gpus else f"{c.rate!r} /s"
        patience = "none" if c.patience is None else f"{c.patience!r} s"
        blocks.append(f"class {c.name} {{ rate = {rate}; prompt = {c.prompt!r} tokens; "
                      f"output = {c.output!r} tokens; patience = {patience} }}")
    return template.rstrip("\n") + "\n\n" + "\n".join(blocks) + "\n"
