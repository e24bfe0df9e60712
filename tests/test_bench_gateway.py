"""`bench/gateway.py`: a tiny bounded sweep gives numbers that agree with each other, and
leaves no process behind. Nothing here judges speed (its guard against replacing a results
file is tested with the other runners' in test_bench_guard.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("aiohttp")


def test_tiny_sweep_counts_and_orders_its_numbers() -> None:
    from bench.gateway import MODES, PATHS, Config, measure

    cfg = Config(concurrency=(1, 3), requests=12, seconds=20.0, warmup=2, idle_s=0.2)
    affinity = os.sched_getaffinity(0)
    out = measure(cfg)
    assert os.sched_getaffinity(0) == affinity  # the client's pinning is undone
    for pid in out["pids"].values():  # the engine and the gateway were stopped and reaped
        assert not Path(f"/proc/{pid}").exists()
    assert set(out["results"]) == {*MODES, "gateway_idle_cpu_share"}
    assert out["results"]["gateway_idle_cpu_share"] >= 0
    for mode in MODES:
        res = out["results"][mode]
        for path in PATHS:
            levels = res["levels"][path]
            assert [r["concurrency"] for r in levels] == [1, 3]
            for r in levels:
                # bounded in count: 20 s is far more than 12 near-instant requests need, so
                # the count bound ends each level, and every request sent came back
                assert r["requests"] == r["completed"] == 12
                assert r["rps"] == pytest.approx(12 / r["wall_s"])
                lat = r["latency_s"]
                assert 0 < lat["p50"] <= lat["p99"] <= r["wall_s"]
                if mode == "streamed":
                    # the first token comes before the last byte of its own request
                    assert 0 < r["ttft_s"]["p50"] <= lat["p99"]
                else:
                    assert r["ttft_s"] is None
                assert all(v >= 0 for v in r["cpu_s"].values())
        d1, g1 = res["levels"]["direct"][0], res["levels"]["gateway"][0]
        assert res["added_latency_s"]["p50"] == pytest.approx(
            g1["latency_s"]["p50"] - d1["latency_s"]["p50"])
        assert res["max_rps"] == {p: max(r["rps"] for r in res["levels"][p]) for p in PATHS}
        top = res["levels"]["gateway"][-1]
        assert res["gateway_cpu_s_per_request"] == pytest.approx(top["cpu_s"]["gateway"] / 12)
        assert 0 <= res["gateway_cpu_s_per_request_net_of_idle"] \
            <= res["gateway_cpu_s_per_request"]
        # the gateway did work for its requests, and the engine for both paths
        assert top["cpu_s"]["gateway"] >= 0 and res["gateway_core_busy"] >= 0

