"""Static planning (DESIGN.md §4): how many GPUs keep a prefill slot, from the LP optimum.

`M = ⌈n·Σx*⌉` GPUs are *mixed* (one reserved prefill slot, at most B−1 decodes); the rest are
*solo* (decode only, at most B). The fluid optimum uses `n·Σx*` prefill slots on average;
rounding up keeps at least that many, and the gate keeps them busy with the right classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fluidgate.model import Cluster

# The solver's last-digit noise must not add a GPU: n·Σx* = 107.00000001 plans 107.
PLAN_TOL = 1e-7


def mixed_gpu_count(gpus: int, mixed_share: float) -> int:
    """`⌈n·Σx⌉`, clamped to `0..n` and robust to the solver's round-off."""
    return min(gpus, max(0, math.ceil(gpus * mixed_share - PLAN_TOL)))


@dataclass(frozen=True, slots=True)
class ClusterPlan:
    gpus: int
    max_batch: int
    chunk: float
    mixed_share: float  # Σx*
    mixed_gpus: int  # ⌈n·Σx*⌉
    solo_gpus: int


def static_plan(cluster: Cluster, mixed_share: float) -> ClusterPlan:
    """The pools for a cluster whose optimum prefills on a share `Σx*` of its GPUs."""
    mixed = mixed_gpu_count(cluster.gpus, mixed_share)
    return ClusterPlan(cluster.gpus, cluster.max_batch, cluster.chunk, mixed_share, mixed,
                       cluster.gpus - mixed)
