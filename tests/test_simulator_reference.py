"""The reference instance (DESIGN.md §2, R* = 297.7162 per GPU per s) in the ctmc simulator:
gate-and-route against R* as n grows, and against the baselines at n = 500.

Numbers are compared with R* from DESIGN.md and with the plan's targets, never with what
the simulator printed before. The FG-SP and decode_heavy occupancy requirements hold since
the deficit gate holds back the class the plan throttles while decodes wait
(`rules.gate_deficit`); with the work-conserving gate they failed (docs/validation.md).
"""

from __future__ import annotations

import math

import pytest

from fluidgate.simulator.config import BASELINES
from fluidgate.simulator.names import PolicyName
from fluidgate.simulator.report import PolicySummary, RunRecord, occupancy, summarise
from fluidgate.simulator.study import StudyOptions, run_study
from tests.simulator_support import reference_spec

R_STAR = 297.7162  # DESIGN.md §2, bundled pricing, per GPU per s
SEEDS = 5
ARRIVALS = 150_000.0  # per run, measured window

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs() -> list[RunRecord]:
    spec = reference_spec()
    assert spec.r_star == pytest.approx(R_STAR, abs=1e-4)
    out = run_study(spec, StudyOptions(gpus=(500,), seeds=SEEDS, arrivals=ARRIVALS,
                                       policies=(PolicyName.GATE_AND_ROUTE, *BASELINES)))
    out += run_study(spec, StudyOptions(gpus=(5, 50), seeds=SEEDS, arrivals=ARRIVALS,
                                        policies=(PolicyName.GATE_AND_ROUTE,)))
    return out


def _summary(runs: list[RunRecord], policy: str, n: int) -> PolicySummary:
    return next(s for s in summarise(runs, R_STAR) if s.policy == policy and s.n == n)


def test_gate_and_route_reaches_97_percent_of_r_star_at_500(runs: list[RunRecord]) -> None:
    s = _summary(runs, "gate-and-route", 500)
    assert s.seeds == SEEDS
    assert s.mean >= 0.97 * R_STAR
    assert s.mean <= R_STAR  # the fluid bound is an upper bound


def test_gap_shrinks_as_n_grows(runs: list[RunRecord]) -> None:
    gaps = {n: 1 - _summary(runs, "gate-and-route", n).ratio for n in (5, 50, 500)}
    assert gaps[5] > gaps[50] > gaps[500] > 0
    # 1/√n would shrink the gap tenfold from 5 to 500 GPUs; the rounding of M = ⌈n·Σx*⌉
    # varies with n (the gap is flat from 20 to 50, docs/validation.md), so ask for a
    # factor of four (about six is measured; the work-conserving gate managed about 2.7)
    assert gaps[5] / gaps[500] > 4.0
    for n in (5, 50, 500):
        assert gaps[n] * math.sqrt(n) < 0.8


@pytest.mark.parametrize("baseline", ["FI-WSP", "GI-WSP", "GF-WSP", "FG-SP"])
def test_gate_and_route_beats_every_baseline_at_500(runs: list[RunRecord],
                                                    baseline: str) -> None:
    ours, theirs = _summary(runs, "gate-and-route", 500), _summary(runs, baseline, 500)
    assert theirs.ci_high < ours.ci_low


def _occupancy(runs: list[RunRecord], name: str) -> float:
    rec = next(o for o in occupancy(runs, reference_spec(), "gate-and-route")
               if o.n == 500 and o.name == name)
    return rec.measured / rec.target


def test_prefill_heavy_occupancy_within_5_percent_at_500(runs: list[RunRecord]) -> None:
    assert _occupancy(runs, "prefill_heavy") == pytest.approx(1.0, abs=0.05)


def test_decode_heavy_occupancy_within_5_percent_at_500(runs: list[RunRecord]) -> None:
    assert _occupancy(runs, "decode_heavy") == pytest.approx(1.0, abs=0.05)
