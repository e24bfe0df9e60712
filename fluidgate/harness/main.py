"""The `fluidgate harness` command's body: solve, plan, run, compare, write.

Kept apart from `cli.py` so the option parsing stays small and this, which imports the
solver, the simulator and the services, is imported only when the command runs.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from fluidgate.harness.cli import EngineKind, fail

if TYPE_CHECKING:
    from fluidgate.controllers.spec import ControllerSpec
    from fluidgate.harness.launch import RealEngines
    from fluidgate.harness.load import Arrival
    from fluidgate.harness.run import HarnessOptions

EXIT_INFEASIBLE, EXIT_SOLVER = 3, 4
SCHEMA = "fluidgate.harness/v1"


def sglang_warning(spec: ControllerSpec) -> str | None:
    """What of the plan SGLang servers are expected to fail through the gateway, if any."""
    from fluidgate.controllers.export import plan
    from fluidgate.controllers.export.sglang import STACK

    if spec.cluster.solo_gpus == 0:
        return ("warning: with no decode-only engine the SGLang servers run without "
                "disaggregation (null mode), and the gateway still sends each request to a "
                "prefill and a decode half, so each request is prefilled twice "
                "(docs/harness.md)")
    lost = plan.mixed_decodes(spec, STACK, "prefill")
    if lost is None:
        return None
    return (f"warning: {lost.rule}, but {lost.detail}; the gateway places them as planned, "
            "and those requests are expected to fail on SGLang servers (docs/harness.md)")


@dataclass(frozen=True)
class TraceReplay:
    """`--trace FILE --trace-format F --speed X --offset S`: what `fluidgate load` replays."""

    path: Path
    format: str
    speed: float
    offset: float


def solve_to_spec(policy_file: Path) -> Any:
    from fluidgate.cli import SolverName, solved_spec

    return solved_spec(policy_file, SolverName.HIGHS)[0]


def _out_dir(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        fail(f"error: --out {out} exists and is not a directory")
    if not out.parent.is_dir():
        fail(f"error: --out {out}: its parent directory does not exist")
    out.mkdir(exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    return out


def run_command(policy_file: Path, gpus: int, duration: float, out: Path, time_scale: float,
                seed: int, stream_interval: int, lead_ms: float, simulate: bool,
                real: RealEngines | None = None, replay: TraceReplay | None = None,
                decoder: str | None = None) -> None:
    from fluidgate.atomic import OutputError, write_output
    from fluidgate.controllers.spec import write_spec
    from fluidgate.harness.load import jsonl
    from fluidgate.harness.plot import comparison
    from fluidgate.harness.report import (
        measured_block,
        predicted_block,
        relative_gap,
        request_counts,
        sent_trace,
        simulated_block,
    )
    from fluidgate.harness.run import HarnessError, HarnessOptions, run_harness
    from fluidgate.simulator.config import SimulationInputError, spec_at, whole_tokens

    spec = solve_to_spec(policy_file)
    try:
        spec_n = spec_at(spec, gpus)
        whole_tokens(spec_n)
    except SimulationInputError as exc:
        fail(f"error: {exc}")
    arrivals = None if replay is None else _replayed(spec_n, replay, duration, seed)
    out = _out_dir(out)
    spec_path = out / "spec.json"
    try:
        write_spec(spec_n, spec_path, inputs=[policy_file])
    except OutputError as exc:
        fail(f"error: {exc}")
    c = spec_n.cluster
    console = Console(stderr=True, highlight=False)
    kind = real.kind.value if real is not None else "emulated"
    inputs = [policy_file] if replay is None else [policy_file, replay.path]
    console.print(f"{c.mixed_gpus} mixed + {c.solo_gpus} solo {kind} engines, "
                  f"{duration:g} s at time scale {time_scale:g}", markup=False)
    opts = HarnessOptions(spec_path, c.mixed_gpus, c.solo_gpus, duration, time_scale, seed,
                          stream_interval, lead_ms, out / "logs", arrivals=arrivals,
                          decoder=decoder)
    if real is not None:
        opts = real_options(opts, real, spec_n, out, console)
    t0 = time.perf_counter()
    try:
        records = asyncio.run(run_harness(spec_n, opts, _progress(console)))
    except HarnessError as exc:
        fail(f"error: {exc}")
    wall = time.perf_counter() - t0
    report: dict[str, Any] = {
        "schema": SCHEMA, "policy": spec.policy.name, "engine": kind, "gpus": gpus,
        "mixed_gpus": c.mixed_gpus, "solo_gpus": c.solo_gpus, "duration": duration,
        "time_scale": time_scale, "seed": seed,
        "prefill_lead_ms": lead_ms, "protocol": opts.protocol.value, "wall_s": wall,
        "requests": request_counts(records),
        "measured": measured_block(spec_n, records, duration),
        "predicted": predicted_block(spec_n), "simulated": None}
    if replay is not None:
        report["trace"] = {"file": str(replay.path), "format": replay.format,
                           "speed": replay.speed, "offset": replay.offset}
    if decoder is not None:
        report["model"] = decoder
    if opts.engines:
        report["engines"] = [{"role": e.role, "gpu": e.gpu, "url": e.url,
                              "command": e.command_line()} for e in opts.engines]
    if simulate:
        from fluidgate.simulator.names import Fidelity
        from fluidgate.simulator.run import RunOptions
        from fluidgate.simulator.run import simulate as run_sim

        result = run_sim(spec, RunOptions(fidelity=Fidelity.ITERATION, gpus=gpus, seed=seed,
                                          duration=duration, warmup=0.0,
                                          trace=sent_trace(records)))
        report["simulated"] = simulated_block(result)
    measured = report["measured"]["revenue_per_gpu"]
    report["revenue_gap"] = {
        b: relative_gap(measured, report[b]["revenue_per_gpu"])
        for b in ("predicted", "simulated") if report[b] is not None}
    try:
        write_output(out / "requests.jsonl", jsonl(records), inputs=inputs)
        write_output(out / "report.json", json.dumps(report, indent=2) + "\n", inputs=inputs)
        comparison(report, out / "measured_vs_predicted.png")
    except OutputError as exc:
        fail(f"error: {exc}")
    _summary(report)


def _replayed(spec: ControllerSpec, replay: TraceReplay, duration: float,
              seed: int) -> tuple[Arrival, ...]:
    """The trace's arrivals as `fluidgate load --trace` sends them; exit 2 (naming the file
    and row) on a bad trace or window, before any process starts."""
    from fluidgate.harness.cli import replay_arrivals

    try:
        return tuple(replay_arrivals(spec, replay.path, replay.format, duration, seed,
                                     replay.speed, replay.offset, None))
    except ValueError as exc:
        fail(f"error: {exc}")


def real_options(opts: HarnessOptions, real: RealEngines, spec: ControllerSpec, out: Path,
                 console: Console) -> HarnessOptions:
    """The run's options with its real engines planned: the model chosen (a generated
    config written under `out`), a command line per engine, token-id request bodies."""
    from dataclasses import replace

    from fluidgate.atomic import OutputError
    from fluidgate.harness.bodies import TokenPrompts
    from fluidgate.harness.handoff import Handoff
    from fluidgate.harness.launch import plan_engines
    from fluidgate.harness.model_choice import ModelError, choose_model

    longest = max(round(c.prompt) + round(c.output) for c in spec.classes)
    try:
        model = choose_model(real.model, out, longest)
        engines = plan_engines(real, spec, model, opts.stream_interval)
    except (ModelError, OutputError, ValueError) as exc:
        fail(f"error: {exc}")
    for e in engines:
        console.print(f"{e.name}: {e.command_line()}", markup=False, soft_wrap=True)
    if real.kind is EngineKind.SGLANG:
        warning = sglang_warning(spec)
        if warning is not None:
            console.print(warning, markup=False)
    return replace(opts, engines=tuple(engines), engines_per_gpu=real.engines_per_gpu,
                   start_timeout=real.start_timeout,
                   body=TokenPrompts(model.token_ids, opts.seed),
                   protocol=Handoff(real.kind.value))


def _progress(console: Console) -> Any:
    def show(run: Any) -> None:
        served = sum(r.outcome == "served" for r in run.records)
        console.print(f"sent {len(run.records)}/{len(run.arrivals)}, served {served}",
                      markup=False)
    return show


def _summary(report: dict[str, Any]) -> None:
    from fluidgate.textsafe import safe_text

    req = report["requests"]
    lines = [f"requests: sent {req['sent']}, served {req['served']}, abandoned "
             f"{req['abandoned']}, rejected {req['rejected']}, failed {req['failed']}",
             "revenue per GPU per s: "
             + ", ".join(f"{b} {report[b]['revenue_per_gpu']:.4g}"
                         for b in ("measured", "predicted", "simulated") if report[b])]
    for b, gap in report["revenue_gap"].items():
        if gap is not None:
            lines.append(f"measured vs {b}: {gap:+.1%}")
    print(safe_text("\n".join(lines), multiline=True))
