"""The per-class work done over numpy columns against its class-by-class definition.

At 50,000 classes, building, scaling, reading back and checking the LP one class at a time
took longer than solving it, so that work now runs elementwise (`model.ClassVectors`,
`metrics.metric_report_of`, `solution.read_plan`, `verify.verify_plan`, ...). Each function
here is compared with the straightforward per-class code it replaced (kept below as the
reference, written against the scalar definitions: `service_rates`, `revenue_coefficients`,
`plan_flow`, the metric functions), on random policies and random LP values that reach every
branch: classes without patience, nothing arrived, never admitted, decoding nowhere, zero
prices. Per-class numbers must be equal bit for bit, sums over classes too (both add in
class order).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from fluidgate import metrics as mx
from fluidgate.controllers.plan import static_plan
from fluidgate.formulations.base_arrays import base_lp
from fluidgate.formulations.columns import CLASS_VARS, SPREAD_VARS, Var
from fluidgate.formulations.fluid_lp import FluidLP, build_fluid_lp
from fluidgate.formulations.matrix import CompiledLP, column_magnitudes, compile_matrix
from fluidgate.formulations.slo import add_slos
from fluidgate.model import ClassVectors, Policy, service_rates
from fluidgate.sli_dsl.loader import load_policy, parse_policy
from fluidgate.solution import QUEUE_TOL, ClassSolution, read_plan
from fluidgate.verify import Check, Failure, verify_plan
from tests.test_base_arrays import random_policy

SEEDS = range(30)


# --- the class-by-class definitions (what the vectorised code replaced) -----------------


def ref_magnitudes(lp: FluidLP, compiled: CompiledLP) -> np.ndarray:
    policy = lp.policy
    B = float(policy.cluster.max_batch)
    size: dict[Var, list[float]] = {var: [] for var in CLASS_VARS}
    for cls in policy.classes:
        r = service_rates(policy.cluster, cls)
        lam = cls.rate
        admitted = min(lam, r.mu_p)
        x = admitted / r.mu_p
        size[Var.X].append(x)
        size[Var.Y_M].append(min((B - 1.0) * x, admitted / r.mu_m))
        size[Var.Y_S].append(min(B, admitted / r.mu_s))
        size[Var.Q_P].append(lam / cls.theta if cls.theta > 0 else 0.0)
        size[Var.Q_D].append(admitted / cls.theta if cls.theta > 0 else 0.0)
    weights = [c.weight for c in policy.classes]
    epigraph: dict[Var, float] = {}
    for hi, lo, var in SPREAD_VARS.values():
        epigraph[hi] = epigraph[lo] = max(v / w for v, w in zip(size[var], weights, strict=True))
    out = np.full(len(compiled.columns), np.nan)
    for col, j in compiled.column_index().items():
        if col.cls_index is not None:
            out[j] = size[col.var][col.cls_index]
        elif col.var in epigraph:
            out[j] = epigraph[col.var]
    return out


def ref_values(compiled: CompiledLP, x: np.ndarray, size: int) -> dict[Var, list[float]]:
    out = {var: [0.0] * size for var in CLASS_VARS}
    for col, j in compiled.column_index().items():
        if col.var in out and col.cls_index is not None:
            out[col.var][col.cls_index] = float(x[j])
    return out


def ref_report(policy: Policy, flows: Sequence[mx.ClassFlow]) -> mx.MetricReport:
    c = policy.cluster
    n = c.gpus
    out: list[mx.ClassMetrics] = []
    for wc, f in zip(policy.classes, flows, strict=True):
        arrived = f.arrivals > 0
        out.append(mx.ClassMetrics(
            name=wc.name, rate=mx.rate(f, n), admitted=mx.admitted(f, n),
            served=mx.served(f, n),
            abandonment=mx.abandonment(f) if arrived else 0.0,
            wait=mx.wait(f) if arrived else 0.0,
            ttft=(mx.wait(f) if arrived else 0.0) + mx.prefill_time(wc.prompt, c)
            if f.prefilling > mx.ADMIT_TOL else None,
            tpot=f.decoding / mx.token_rate(f, c) if mx.token_rate(f, c) > 0 else None,
            p_solo=mx.solo_share(f.served_mixed, f.served_solo)))
    revenue = sum(mx.class_revenue(f, wc, policy.pricing, c)
                  for wc, f in zip(policy.classes, flows, strict=True))
    decoding = sum(f.decoding for f in flows)
    tokens = sum(mx.token_rate(f, c) for f in flows)

    def spread(pool: mx.Pool) -> float:
        shares = [mx.spread_quantity(f, pool) / wc.weight
                  for wc, f in zip(policy.classes, flows, strict=True)]
        return float(max(shares) - min(shares))

    return mx.MetricReport(
        classes=tuple(out), tpot=decoding / tokens if tokens > 0 else None,
        mixed_share=float(mx.mixed_share(flows)), spread_prefill=spread(mx.Pool.PREFILL),
        spread_decode=spread(mx.Pool.DECODE), revenue=n * revenue)


def ref_read_plan(policy: Policy, values: dict[Var, list[float]],
                  ) -> tuple[tuple[ClassSolution, ...], mx.MetricReport, tuple[str, ...], float]:
    c = policy.cluster
    n = c.gpus
    flows = [mx.plan_flow(mx.ClassParams.of(c, cls), *(values[v][i] for v in CLASS_VARS))
             for i, cls in enumerate(policy.classes)]
    report = ref_report(policy, flows)
    out, warnings = [], []
    for i, (cls, m) in enumerate(zip(policy.classes, report.classes, strict=True)):
        x, ym, ys, qp, qd = (values[v][i] for v in CLASS_VARS)
        out.append(ClassSolution(
            name=m.name, x=x, y_m=ym, y_s=ys, q_p=qp, q_d=qd, prefill_gpus=n * x,
            decodes_mixed=n * ym, decodes_solo=n * ys, prefill_queue=n * qp,
            decode_queue=n * qd, arrivals=m.rate, admitted=m.admitted, served=m.served,
            abandonment=m.abandonment, wait=m.wait, ttft=m.ttft, tpot=m.tpot,
            p_solo=m.p_solo))
        if qd > QUEUE_TOL:
            warnings.append(f"class '{cls.name}' keeps a standing decode backlog of "
                            f"{n * qd:.3g} requests")
    return tuple(out), report, tuple(warnings), float(sum(values[Var.X]))


def ref_verify_plan(policy: Policy, classes: Sequence[ClassSolution]) -> list[Failure]:
    failures: list[Failure] = []
    f = 1e-6
    for cs in classes:
        lam = cs.arrivals
        for err, what in (((cs.admitted - cs.arrivals) / lam, "admits more than arrives"),
                          ((cs.served - cs.admitted) / lam, "serves more than it admits"),
                          (-cs.served / lam, "serves a negative rate")):
            if err > f:
                failures.append(Failure(Check.PLAN, f"class '{cs.name}'", err, what))
    B = float(policy.cluster.max_batch)
    share = sum(cs.x for cs in classes)
    mixed = sum(cs.y_m for cs in classes)
    solo = sum(cs.y_s for cs in classes)
    for err, what in ((share - 1.0, "prefills take more than every GPU (Σx > 1)"),
                      ((mixed - (B - 1.0) * share) / B,
                       "mixed GPUs hold more decodes than their slots"),
                      ((solo - B * (1.0 - share)) / B,
                       "solo GPUs hold more decodes than their slots")):
        if err > f:
            failures.append(Failure(Check.PLAN, "cluster", err, what))
    return failures


# --- random LP values reaching every branch ---------------------------------------------


def random_values(policy: Policy, compiled: CompiledLP, seed: int) -> np.ndarray:
    """A value per LP column: most positive, some exactly 0 (a class never admitted, or
    decoding nowhere), some queues above the warning threshold."""
    rng = np.random.default_rng(seed)
    n_cols = compiled.matrix.shape[1]
    x = rng.uniform(0.0, 1.0, n_cols) * 10.0 ** rng.integers(-9, 1, n_cols)
    x[rng.random(n_cols) < 0.25] = 0.0
    return x


@pytest.fixture(params=SEEDS)
def case(request: pytest.FixtureRequest) -> tuple[Policy, FluidLP, CompiledLP, int]:
    seed = int(request.param)
    policy = parse_policy(random_policy(seed)).policy
    lp, compiled = base_lp(policy)
    return policy, lp, compiled, seed


def test_class_vectors_are_the_per_class_values(
        case: tuple[Policy, FluidLP, CompiledLP, int]) -> None:
    policy, _, _, _ = case
    v = ClassVectors.of(policy)
    for i, cls in enumerate(policy.classes):
        r = service_rates(policy.cluster, cls)
        assert (v.mu_p[i], v.mu_m[i], v.mu_s[i]) == (r.mu_p, r.mu_m, r.mu_s)
        assert (v.rate[i], v.prompt[i], v.output[i], v.theta[i], v.weight[i]) == (
            cls.rate, cls.prompt, cls.output, cls.theta, cls.weight)
        assert v.bundled_price[i] == cls.bundled_price
    assert v.rates() == [service_rates(policy.cluster, c) for c in policy.classes]


def test_revenue_coefficient_vectors(case: tuple[Policy, FluidLP, CompiledLP, int]) -> None:
    policy, lp, _, _ = case
    for pricing in ("bundled", "separate"):
        kx, kym, kys = mx.revenue_coefficient_vectors(policy.cluster, lp.vectors, pricing)
        for i, cls in enumerate(policy.classes):
            k = mx.revenue_coefficients(policy.cluster, cls, pricing)
            assert (kx[i], kym[i], kys[i]) == (k.x, k.y_m, k.y_s)


def test_column_magnitudes_and_values(case: tuple[Policy, FluidLP, CompiledLP, int]) -> None:
    policy, lp, compiled, seed = case
    np.testing.assert_array_equal(column_magnitudes(lp, compiled),
                                  ref_magnitudes(lp, compiled))
    x = random_values(policy, compiled, seed)
    got = compiled.variable_values(x, len(policy.classes))
    want = ref_values(compiled, x, len(policy.classes))
    for var in CLASS_VARS:
        assert got[var].tolist() == want[var]


def test_read_plan_and_metric_report(case: tuple[Policy, FluidLP, CompiledLP, int]) -> None:
    policy, lp, compiled, seed = case
    x = random_values(policy, compiled, seed)
    values = compiled.variable_values(x, len(policy.classes))
    got = read_plan(policy, values, lp.vectors)
    classes, report, warnings, share = ref_read_plan(
        policy, ref_values(compiled, x, len(policy.classes)))
    assert got.classes == classes  # every field, bit for bit
    assert got.metrics == report
    assert got.plan == static_plan(policy.cluster, share)
    assert [w.split(" requests")[0] for w in got.warnings] == [
        w.split(" requests")[0] for w in warnings]
    assert read_plan(policy, values).classes == classes  # vectors computed when not given


def test_guarded_metrics_are_reached() -> None:
    """Across the random cases, some classes are never admitted, decode nowhere, keep a
    decode backlog, and some are served: every branch above is compared."""
    seen = {"no ttft": 0, "ttft": 0, "no tpot": 0, "tpot": 0, "backlog": 0}
    for seed in SEEDS:
        policy = parse_policy(random_policy(seed)).policy
        _, compiled = base_lp(policy)
        x = random_values(policy, compiled, seed)
        got = read_plan(policy, compiled.variable_values(x, len(policy.classes)))
        for c in got.classes:
            seen["ttft" if c.ttft is not None else "no ttft"] += 1
            seen["tpot" if c.tpot is not None else "no tpot"] += 1
        seen["backlog"] += len(got.warnings)
    assert all(count > 0 for count in seen.values()), seen


def test_measured_report_with_nothing_arrived() -> None:
    """`metric_report` on measured flows: a class nothing arrived from (abandonment and
    wait 0), one that decoded nowhere (tpot None)."""
    policy = parse_policy(random_policy(3)).policy
    rng = random.Random(3)
    flows = []
    for i, _ in enumerate(policy.classes):
        vals = [rng.uniform(0, 2) for _ in range(10)]
        if i % 3 == 0:
            vals[0] = 0.0  # arrivals
        if i % 4 == 0:
            vals[7] = vals[8] = 0.0  # decoding nowhere
        flows.append(mx.ClassFlow(*vals))
    assert mx.metric_report(policy, flows) == ref_report(policy, flows)


def test_verify_plan_finds_the_same_failures(
        case: tuple[Policy, FluidLP, CompiledLP, int]) -> None:
    policy, _, compiled, seed = case
    x = random_values(policy, compiled, seed)
    classes = read_plan(policy, compiled.variable_values(x, len(policy.classes))).classes
    rng = random.Random(seed)
    broken = tuple(dataclasses.replace(c, admitted=c.arrivals * rng.uniform(0.5, 1.5),
                                       served=c.arrivals * rng.uniform(-0.1, 1.5))
                   for c in classes)
    broken = (dataclasses.replace(broken[0], admitted=broken[0].arrivals * 1.5,
                                  served=-0.1 * broken[0].arrivals, x=2.0), *broken[1:])
    for plan in (classes, broken):
        assert verify_plan(policy, plan) == ref_verify_plan(policy, plan)
    assert ref_verify_plan(policy, broken)  # the broken plan does fail


def test_class_columns_of_a_pyomo_compile(case: tuple[Policy, FluidLP, CompiledLP, int]) -> None:
    """`class_columns`, derived from a Pyomo compile's columns, is what base_lp computes;
    with SLOs and spread epigraphs, `scalar_columns` finds the epigraph columns."""
    policy, _, fast, seed = case
    reference = compile_matrix(build_fluid_lp(policy))
    for var in CLASS_VARS:
        np.testing.assert_array_equal(reference.class_columns()[var], fast.class_columns()[var])
    assert dict(fast.scalar_columns()) == {}
    text = random_policy(seed).replace(
        "objective", "slo { spread(prefill) <= 0.5\n spread(decode) <= 0.9 }\nobjective")
    lp = build_fluid_lp(parse_policy(text).policy)
    add_slos(lp)
    compiled = compile_matrix(lp)
    index = compiled.column_index()
    assert dict(compiled.scalar_columns()) == {c: j for c, j in index.items()
                                               if c.cls_index is None}
    assert len(compiled.scalar_columns()) == 4
    np.testing.assert_array_equal(column_magnitudes(lp, compiled), ref_magnitudes(lp, compiled))


def _table(rng: random.Random, n: int) -> tuple[str, str]:
    """A class table with per-request and per-token price columns, some cells empty, and the
    same classes as `class` blocks."""
    rows = ["name,rate[/s],prompt,output,patience[s],price_input[per request],"
            "price_output[per Mtok],weight"]
    blocks = []
    for i in range(n):
        rate, prompt, output = f"{rng.uniform(0.5, 50):.5g}", rng.randint(1, 9000), \
            rng.randint(1, 3000)
        patience = "" if i % 3 == 0 else f"{rng.uniform(1, 100):.4g}"
        pin = "" if i % 4 == 0 else f"{rng.uniform(0.001, 0.05):.4g}"
        pout = "" if i % 5 == 0 else f"{rng.uniform(0.1, 3):.4g}"
        weight = "" if i % 2 else f"{rng.uniform(0.5, 4):.3g}"
        rows.append(f"k{i},{rate},{prompt},{output},{patience},{pin},{pout},{weight}")
        price = [f"input = {pin} per request"] if pin else []
        price += [f"output = {pout} per Mtok"] if pout else []
        blocks.append(
            f"class k{i} {{ rate = {rate} /s; prompt = {prompt} tokens; output = {output} "
            f"tokens" + (f"; patience = {patience} s" if patience else "")
            + (f"; price {{ {'; '.join(price)} }}" if price else "")
            + (f"; weight = {weight}" if weight else "") + " }")
    return "\n".join(rows) + "\n", "\n".join(blocks) + "\n"


@pytest.mark.parametrize("default", ["input = 0.02 per request; output = 2 per Mtok",
                                     "input = 0.3 per Mtok; output = 0.01 per request"])
def test_table_prices_equal_inline_classes(tmp_path: Path, default: str) -> None:
    """The table's price columns, converted per column (per request over the class's
    tokens, or the pricing block's price where a cell is empty), equal what each inline
    class gets from `fields.per_token`, bit for bit; and each class's span is its name
    cell."""
    head = ('policy "prices"\ncluster { gpus = 40; max_batch = 16; chunk = 256 tokens\n'
            "  iteration { mixed = 17 ms + 0.06 ms/token * chunk; solo = 22 ms } }\n"
            f"pricing separate {{ {default} }}\n")
    table, blocks = _table(random.Random(len(default)), 60)
    (tmp_path / "t.csv").write_text(table)
    (tmp_path / "t.sli").write_text(head + 'classes from "t.csv"\n')
    (tmp_path / "b.sli").write_text(head + blocks)
    from_table = load_policy(tmp_path / "t.sli").policy.classes
    inline = load_policy(tmp_path / "b.sli").policy.classes
    assert from_table == inline
    lines = table.splitlines()
    for k, cls in enumerate(from_table, start=2):
        assert cls.span is not None and cls.span.line == k
        assert (cls.span.column, cls.span.end_column) == (1, len(lines[k - 1].split(",")[0]) + 1)
