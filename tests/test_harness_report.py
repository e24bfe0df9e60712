"""The harness report's reference blocks: the LP's plan at N, and the simulator run on the
very arrivals the load generator sent."""

from __future__ import annotations

import pytest

from fluidgate.harness.load import RequestRecord
from fluidgate.harness.report import predicted_block, sent_trace, simulated_block
from fluidgate.simulator.config import spec_at
from fluidgate.simulator.names import Fidelity
from fluidgate.simulator.run import RunOptions, simulate
from tests.simulator_support import reference_spec


def test_predicted_block_is_the_plan_at_n() -> None:
    # 0.5 arrivals/s per GPU per class: 4 /s on 8 GPUs; the prefill-heavy class is fully
    # admitted by the plan, so it is served at its arrival rate.
    block = predicted_block(spec_at(reference_spec(), 8))
    assert block["classes"]["decode_heavy"]["arrivals"] == pytest.approx(4.0)
    assert block["classes"]["prefill_heavy"]["served"] == pytest.approx(4.0)
    assert block["revenue_per_gpu"] == pytest.approx(297.7162, rel=1e-4)


def test_simulated_block_runs_the_sent_arrivals() -> None:
    # 7 decode-heavy and 3 prefill-heavy requests in 10 s: the simulator, handed them as a
    # trace, counts exactly these arrivals (a fresh Poisson draw at 4 /s per class on 8
    # GPUs would see about 40 of each).
    records = [RequestRecord("decode_heavy" if i % 10 < 7 else "prefill_heavy", 0.9 * i,
                             300 if i % 10 < 7 else 3000, 20) for i in range(10)]
    trace = sent_trace(records)
    assert trace is not None
    result = simulate(reference_spec(), RunOptions(fidelity=Fidelity.ITERATION, gpus=8, seed=0,
                                                   duration=10.0, warmup=0.0, trace=trace))
    block = simulated_block(result)
    assert block["classes"]["decode_heavy"]["arrivals"] * 10.0 == pytest.approx(7)
    assert block["classes"]["prefill_heavy"]["arrivals"] * 10.0 == pytest.approx(3)
    assert sent_trace([]) is None
