"""What a person reads after a run or a study: measured next to predicted, in tables.

Predictions are the spec's (`classes[i].predicted`, `targets`, `revenue_rate`), scaled to the
simulated cluster size; the report documents carry the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from fluidgate import __version__
from fluidgate.controllers.spec import ControllerSpec
from fluidgate.metrics import Measured, MetricReport, measured_report
from fluidgate.simulator.config import spec_at, spec_policy
from fluidgate.simulator.report import (
    RunRecord,
    SimulationReport,
    ValidationReport,
    occupancy,
    run_record,
    summarise,
)
from fluidgate.simulator.run import RunResult
from fluidgate.simulator.study import StudyOptions
from fluidgate.textsafe import safe_text


def _num(value: float | None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.{digits}g}"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:.1f} ms"


def simulation_report(spec: ControllerSpec, result: RunResult) -> SimulationReport:
    return SimulationReport(generator=f"fluidgate {__version__}", spec_policy=spec.policy.path,
                            r_star=spec.r_star, predicted_revenue_per_gpu=spec.revenue_rate,
                            run=run_record(result))


def measured_metrics(spec: ControllerSpec, result: RunResult) -> MetricReport:
    """The run's metrics by the metrics module's definitions (the ones the plan's
    predictions use): flows from counts, queues and occupancies from time averages."""
    scaled = spec_at(spec, result.gpus)
    measured = [Measured(arrivals=c.arrivals, admitted=c.admitted, served_mixed=c.served_mixed,
                         served_solo=c.served_solo,
                         abandoned=c.abandoned_prefill + c.abandoned_decode,
                         prefilling=c.prefilling, decoding_mixed=c.decoding_mixed,
                         decoding_solo=c.decoding_solo, waiting_prefill=c.waiting_prefill,
                         waiting_decode=c.waiting_decode) for c in result.classes]
    return measured_report(spec_policy(scaled), measured, result.duration)


def render_run(spec: ControllerSpec, result: RunResult, console: Console) -> None:
    run = run_record(result)
    metrics = measured_metrics(spec, result)
    scaled = spec_at(spec, result.gpus)
    console.print(
        f"{result.policy} on {result.gpus} GPUs ({result.mixed_gpus} with a prefill slot), "
        f"{result.fidelity}, seed {result.seed}: {result.duration:,.0f} s measured after "
        f"{result.warmup:,.0f} s warm-up, {result.events:,} events in {result.wall_s:.2f} s",
        markup=False)
    ratio = run.revenue_per_gpu / spec.revenue_rate if spec.revenue_rate else math.nan
    console.print(f"revenue per GPU per s: {run.revenue_per_gpu:.4f} measured, "
                  f"{spec.revenue_rate:.4f} planned (R*), ratio {ratio:.4f}", markup=False)
    table = Table(title="measured against the plan's prediction")
    for col in ("class", "metric", "measured", "predicted"):
        table.add_column(col, justify="left" if col in ("class", "metric") else "right")
    for c, m, sc in zip(run.classes, metrics.classes, scaled.classes, strict=True):
        p = sc.predicted
        rows = [
            ("admitted, req/s", _num(m.admitted), _num(p.admitted)),
            ("served, req/s", _num(m.served), _num(p.served)),
            ("abandonment", _num(m.abandonment, 3), _num(p.abandonment, 3)),
            ("  after prefill, req/s", _num(c.abandoned_decode, 3), "0"),
            ("wait for prefill", _ms(m.wait), _ms(p.wait)),
            ("TTFT (wait + P·τ/C)", _ms(m.ttft), _ms(p.ttft)),
            ("TTFT per request: mean", _ms(c.ttft_mean), ""),
            ("  p50 / p90 / p99",
             f"{_ms(c.ttft_p50)} / {_ms(c.ttft_p90)} / {_ms(c.ttft_p99)}", ""),
            ("TPOT (time averages)", _ms(m.tpot), _ms(p.tpot)),
            ("TPOT per request: mean", _ms(c.tpot_mean), ""),
            ("  p50 / p99", f"{_ms(c.tpot_p50)} / {_ms(c.tpot_p99)}", ""),
            ("prefills running", _num(c.prefilling), _num(sc.targets.prefill)),
            ("decodes running", _num(c.decoding_mixed + c.decoding_solo),
             _num(sc.targets.decodes_mixed + sc.targets.decodes_solo)),
            ("waiting for prefill", _num(c.waiting_prefill), _num(sc.targets.prefill_queue)),
            ("waiting to decode", _num(c.waiting_decode), _num(sc.targets.decode_queue)),
        ]
        for j, (metric, measured, predicted) in enumerate(rows):
            table.add_row(safe_text(c.name) if j == 0 else "", metric, measured, predicted,
                          end_section=j == len(rows) - 1)
    console.print(table)


def validation_report(spec: ControllerSpec, policy_path: str, opts: StudyOptions,
                      runs: Sequence[RunRecord]) -> ValidationReport:
    return ValidationReport(
        generator=f"fluidgate {__version__}", policy=policy_path, r_star=spec.r_star,
        fidelity=str(opts.fidelity), gpus=list(opts.gpus), seeds=opts.seeds, runs=list(runs),
        summary=summarise(runs, spec.r_star),
        occupancy=occupancy(runs, spec, "gate-and-route"))


def render_study(report: ValidationReport, console: Console) -> None:
    console.print(f"R* = {report.r_star:.4f} per GPU per s; {report.seeds} seeds per cell; "
                  f"{report.fidelity}; revenue per GPU / R*, mean ± 95 % interval half-width",
                  markup=False)
    policies = list(dict.fromkeys(s.policy for s in report.summary))
    table = Table(title="revenue per GPU / R*")
    table.add_column("n", justify="right")
    for p in policies:
        table.add_column(p, justify="right")
    for n in report.gpus:
        row = [str(n)]
        for p in policies:
            s = next((s for s in report.summary if s.policy == p and s.n == n), None)
            half = None if s is None else (s.ci_high - s.ci_low) / 2 / report.r_star
            row.append("—" if s is None or half is None else f"{s.ratio:.4f} ±{half:.4f}")
        table.add_row(*row)
    console.print(table)
    occ = Table(title="gate-and-route: running prefills, measured / target n·x*")
    occ.add_column("n", justify="right")
    names = list(dict.fromkeys(o.name for o in report.occupancy))
    for name in names:
        occ.add_column(safe_text(name), justify="right")
    for n in report.gpus:
        cells = [str(n)]
        for name in names:
            o = next(o for o in report.occupancy if o.n == n and o.name == name)
            cells.append(f"{o.measured:.3g} / {o.target:.3g}")
        occ.add_row(*cells)
    console.print(occ)
