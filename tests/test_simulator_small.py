"""Hand-checkable cases: a single-server queue with abandonment, one request through the
iteration level, reproducibility, and refusals that name the field or row."""

from __future__ import annotations

import math

import pytest

from fluidgate.controllers.spec import RouterRule
from fluidgate.simulator.config import SimulationInputError
from fluidgate.simulator.names import Fidelity, PolicyName
from fluidgate.simulator.run import RunOptions, simulate
from fluidgate.simulator.trace import parse_trace
from tests.simulator_support import one_gpu_spec

TAU_MIX = 0.0174 + 6.2e-5 * 256  # the make_spec cluster: α + β·C
TAU_SOLO = 0.022


def erlang_a1(lam: float, mu: float, theta: float, cap: int = 400) -> tuple[float, float]:
    """M/M/1+M: (admission rate, mean number waiting), from the birth-death chain
    π_k / π_(k-1) = λ / (μ + (k-1)·θ) with k requests in the system."""
    weights = [1.0]
    for k in range(1, cap):
        weights.append(weights[-1] * lam / (mu + (k - 1) * theta))
    total = math.fsum(weights)
    p0 = weights[0] / total
    waiting = math.fsum((k - 1) * w for k, w in enumerate(weights) if k >= 1) / total
    return mu * (1 - p0), waiting


def test_single_gpu_prefill_queue_matches_erlang_a() -> None:
    # one mixed GPU: its prefill slot is one server; patience 2 s; μ_p = C/(P·τ)
    prompt, lam, theta = 3000.0, 2.0, 0.5
    spec = one_gpu_spec(rate=lam, patience=1 / theta, prompt=prompt, output=100.0)
    mu = 256 / (prompt * TAU_MIX)
    admitted, waiting = erlang_a1(lam, mu, theta)
    r = simulate(spec, RunOptions(seed=3, duration=100_000.0, warmup=100.0))
    c = r.classes[0]
    assert c.admitted / r.duration == pytest.approx(admitted, rel=0.02)
    assert c.waiting_prefill == pytest.approx(waiting, rel=0.04)
    # abandonment from the prefill queue is θ times the mean number waiting
    assert c.abandoned_prefill / r.duration == pytest.approx(theta * waiting, rel=0.04)


def test_one_request_through_the_iteration_level() -> None:
    # P = 512 tokens: two full 256-token chunks; then 10 decode-only iterations
    spec = one_gpu_spec(rate=0.5, patience=None, prompt=512.0, output=10.0)
    trace = parse_trace("time,class,prompt,output\n0.5,c0,512,10\n")
    r = simulate(spec, RunOptions(fidelity=Fidelity.ITERATION, trace=trace, warmup=0.0,
                                  duration=10.0))
    c = r.classes[0]
    assert (c.arrivals, c.admitted, c.served) == (1, 1, 1)
    assert c.ttft_mean == pytest.approx(2 * TAU_MIX, rel=1e-9)
    assert c.tpot_mean == pytest.approx(TAU_SOLO, rel=1e-9)
    assert r.steps == 12
    assert r.revenue == pytest.approx(0.1 * 512 + 0.2 * 10)


@pytest.mark.parametrize("fidelity", list(Fidelity))
def test_same_seed_same_run(fidelity: Fidelity) -> None:
    spec = one_gpu_spec(rate=2.0, patience=2.0, prompt=512.0, output=50.0)
    opts = RunOptions(fidelity=fidelity, gpus=4, seed=11, duration=300.0, warmup=10.0)
    a, b = simulate(spec, opts), simulate(spec, opts)
    other = simulate(spec, RunOptions(fidelity=fidelity, gpus=4, seed=12, duration=300.0,
                                      warmup=10.0))
    assert a.revenue == b.revenue and a.events == b.events and a.classes == b.classes
    assert other.revenue != a.revenue


def test_sli_router_without_solo_gpus_is_refused_naming_the_field() -> None:
    spec = one_gpu_spec(rate=1.0, patience=5.0, prompt=300.0, output=100.0,
                        router=RouterRule.SLI_SPLIT, p_solo=0.4)
    with pytest.raises(SimulationInputError, match=r"classes\[0\]\.p_solo"):
        simulate(spec, RunOptions(policy=PolicyName.SLI_ROUTER, duration=10.0))


def test_fractional_tokens_are_refused_by_the_iteration_level() -> None:
    spec = one_gpu_spec(rate=1.0, patience=5.0, prompt=300.5, output=100.0)
    with pytest.raises(SimulationInputError, match=r"classes\[0\]\.prompt"):
        simulate(spec, RunOptions(fidelity=Fidelity.ITERATION, duration=10.0))
    simulate(spec, RunOptions(duration=10.0, warmup=1.0))  # the ctmc level takes it


def test_impatient_overload_is_refused_not_simulated_forever() -> None:
    # nobody leaves and one GPU cannot keep up: the queue grows without bound
    spec = one_gpu_spec(rate=50.0, patience=None, prompt=3000.0, output=100.0)
    with pytest.raises(SimulationInputError, match=r"classes\[0\].*nobody leaves"):
        simulate(spec, RunOptions(duration=20_000_000.0, warmup=0.0, max_queue=20_000))


@pytest.mark.parametrize(("row", "message"), [
    ("1.0,c0,abc,10", "row 3: could not convert"),
    ("1.0,c0,12.5,10", "row 3: prompt must be a whole number"),
    ("-1,c0,12,10", "row 3: time must be a finite number"),
    ("0.5,c0,12,10", "row 3: time 0.5 is earlier"),
    ("1.0,c0,12", "row 3: 3 fields"),
    ("1.0,,12,10", "row 3: class is empty"),
    ("nan,c0,12,10", "row 3: time must be a finite"),
])
def test_bad_trace_rows_are_named(row: str, message: str) -> None:
    with pytest.raises(SimulationInputError, match=message):
        parse_trace(f"time,class,prompt,output\n0.9,c0,12,10\n{row}\n", "t.csv")


def test_trace_header_and_unknown_class() -> None:
    with pytest.raises(SimulationInputError, match="row 1: the header"):
        parse_trace("when,class,prompt,output\n1,c0,1,1\n")
    trace = parse_trace("time,class,prompt,output\n1,c0,1,1\n2,chat,1,1\n", "t.csv")
    spec = one_gpu_spec(rate=1.0, patience=5.0, prompt=300.0, output=100.0)
    with pytest.raises(SimulationInputError, match="row 3: class 'chat' is not in the spec"):
        simulate(spec, RunOptions(trace=trace))


def test_sli_router_splits_decodes_as_the_spec_says() -> None:
    from tests.simulator_support import reference_spec

    spec = reference_spec()
    r = simulate(spec, RunOptions(policy=PolicyName.SLI_ROUTER, gpus=200, duration=500.0,
                                  seed=2))
    shares = [c.served_solo / c.served for c in r.classes]
    # decode_heavy is planned entirely on solo GPUs: none may ever decode on a mixed one
    assert spec.classes[0].p_solo == 1.0 and shares[0] == 1.0
    # prefill_heavy splits at p_solo; a mixed GPU whose prefill slot is briefly idle decodes
    # at solo speed and counts as solo, so the measured share sits slightly above
    assert shares[1] == pytest.approx(spec.classes[1].p_solo, abs=0.03)


def test_spec_at_scales_the_cluster_wide_predictions_with_n() -> None:
    # The reference instance's classes arrive at 0.5 /s per GPU: on 8 GPUs the predicted
    # arrival rate is 4 /s, whatever N the spec was solved for (500). The shares and the
    # per-request times do not depend on N.
    from fluidgate.simulator.config import spec_at
    from tests.simulator_support import reference_spec

    spec = reference_spec()
    at8 = spec_at(spec, 8)
    for c, c8 in zip(spec.classes, at8.classes, strict=True):
        assert c8.predicted.arrivals == pytest.approx(c.rate * 8)
        assert c8.predicted.admitted == pytest.approx(c.predicted.admitted * 8 / 500)
        assert c8.predicted.served == pytest.approx(c.predicted.served * 8 / 500)
        for f in ("abandonment", "wait", "ttft", "tpot"):
            assert getattr(c8.predicted, f) == getattr(c.predicted, f)
        assert c8.targets.prefill == pytest.approx(c.targets.prefill * 8 / 500)
