"""`fluidgate engine|gateway|load|harness`: the validation harness on the command line.

The commands need aiohttp and prometheus_client (the `[harness]` extra); without them they
say how to install them and exit 2. Importing this module stays cheap: the services and
their libraries are imported inside the commands.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console

from fluidgate.harness.handoff import Handoff

if TYPE_CHECKING:
    from fluidgate.controllers.spec import ControllerSpec
    from fluidgate.harness.core import EngineCore
    from fluidgate.harness.timing import EngineTiming

EXIT_INPUT = 2
INSTALL_HINT = ("error: the harness needs aiohttp and prometheus_client; install them with "
                "pip install -e '.[harness]' in the fluidgate checkout")


class Role(StrEnum):
    MIXED = "mixed"
    SOLO = "solo"


class Device(StrEnum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


def fail(message: str, code: int = EXIT_INPUT) -> NoReturn:
    from fluidgate.textsafe import safe_text

    Console(stderr=True, highlight=False, soft_wrap=True).print(
        safe_text(message, multiline=True), markup=False)
    raise typer.Exit(code)


def need_libraries() -> None:
    try:
        import aiohttp  # noqa: F401
        import prometheus_client  # noqa: F401
    except ImportError:
        fail(INSTALL_HINT)


def positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        fail(f"error: {name} must be a positive number, not {value}")


def lead_option(value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        fail(f"error: --prefill-lead must be 0 or more milliseconds, not {value}")


def replay_options(trace: Path | None, trace_format: str, speed: float, offset: float,
                   limit: int | None = None) -> None:
    """Exit 2 on a trace option that would be silently ignored (no --trace) or an unknown
    --trace-format, before anything is read, solved or started."""
    if trace is None:
        given = [name for name, value, default in (
            ("--trace-format", trace_format, "auto"), ("--speed", speed, 1.0),
            ("--offset", offset, 0.0), ("--limit", limit, None)) if value != default]
        if given:
            fail(f"error: {', '.join(given)} without --trace would be ignored (trace options "
                 "shape a replayed trace only); give --trace FILE or leave them out")
        return
    from fluidgate.planning.traces import TraceFormat

    if trace_format not in [f.value for f in TraceFormat]:
        fail("error: --trace-format must be auto, azure, mooncake or plain, not "
             f"{trace_format!r}")


def _timing(spec_file: Path | None, policy_file: Path | None) -> EngineTiming:
    from fluidgate.harness.timing import timing_from_cluster, timing_from_spec

    if (spec_file is None) == (policy_file is None):
        fail("error: give the timing with exactly one of --spec SPEC.json or --policy P.sli")
    try:
        if spec_file is not None:
            from fluidgate.controllers.spec import SpecError, load_spec

            try:
                return timing_from_spec(load_spec(spec_file))
            except SpecError as exc:
                fail(f"error: {exc}")
        from fluidgate.diagnostics import PolicyError
        from fluidgate.sli_dsl.loader import load_policy

        assert policy_file is not None
        try:
            return timing_from_cluster(load_policy(policy_file).policy.cluster)
        except PolicyError as exc:
            fail(exc.render())
    except ValueError as exc:
        fail(f"error: {exc}")


def engine(
    role: Annotated[Role, typer.Option(help="mixed: prefills and decodes (one prefill slot, "
                                       "B − 1 decode slots); solo: decodes only (B slots).")],
    port: Annotated[int, typer.Option(help="Loopback port; 0 picks a free one (printed as "
                                      "'listening http://127.0.0.1:PORT').")] = 0,
    spec: Annotated[Path | None, typer.Option(
        help="Time iterations by this controller spec's curves (B, C, τ_mix, τ_solo).",
        show_default=False)] = None,
    policy: Annotated[Path | None, typer.Option(
        help="Time iterations by this policy's cluster block (inline or calibrated).",
        show_default=False)] = None,
    time_scale: Annotated[float, typer.Option(help="Model seconds per wall second (10: ten "
                                              "times faster than real).")] = 1.0,
    stream_interval: Annotated[int, typer.Option(help="Tokens per streamed chunk after the "
                                                 "first (as vLLM's --stream-interval).")] = 1,
    prefill_lead: Annotated[float, typer.Option(
        help="Announce a streamed prefill-only request's end once at most this many wall "
        "milliseconds of prefill work (times the time scale in model time) remain before it, "
        "so a gateway can send the next prefill without an idle gap (0: never).")] = 0.0,
    model: Annotated[str | None, typer.Option(
        metavar="NAME", help="Run each iteration as a real forward pass of this calibration "
        "decoder (tiny, small, qwen3-0.6b, … as in 'calibrate measure') and last its measured "
        "time, instead of the curves; --spec/--policy still give B and C. Needs PyTorch.",
        show_default=False)] = None,
    device: Annotated[Device, typer.Option(help="With --model: where the passes run; auto "
                                           "prefers CUDA.")] = Device.AUTO,
    context: Annotated[int | None, typer.Option(
        metavar="N", help="With --model: cached tokens each decode attends to (default: "
        "calibrate measure's, 1024).", show_default=False)] = None,
    threads: Annotated[int | None, typer.Option(
        metavar="N", help="With --model on a CPU: PyTorch threads (default 1, as calibrate "
        "measure).", show_default=False)] = None,
    bootstrap_port: Annotated[int | None, typer.Option(
        metavar="PORT", help="Also answer SGLang's KV bootstrap handshake on this loopback "
        "port (as SGLang's --disaggregation-bootstrap-port; it is always answered on --port "
        "too).", show_default=False)] = None,
) -> None:
    """Run an emulated OpenAI-compatible engine whose iterations follow the calibrated τ.

    Continuous batching with at most B streams and a prefill chunk of C tokens per mixed
    iteration; speaks vLLM's two-step disaggregated protocol (kv_transfer_params) and
    SGLang's bootstrap-room pairing (bootstrap_host/port/room). With
    --model, each iteration is a real forward pass (its measured time; --time-scale must
    be 1). Stops on Ctrl-C or SIGTERM. Exit 2 on a bad option, a bad file, a port already
    taken, or --model without PyTorch.
    """
    need_libraries()
    positive("--time-scale", time_scale)
    if stream_interval < 1:
        fail(f"error: --stream-interval must be at least 1, not {stream_interval}")
    lead_option(prefill_lead)
    timing = _timing(spec, policy)
    from fluidgate.harness.core import EngineCore
    from fluidgate.harness.engine import EngineServer
    from fluidgate.harness.serve import PortError, serve_forever

    if model is None:
        core = EngineCore(timing, role is Role.MIXED, time_scale, stream_interval,
                          prefill_lead / 1000 * time_scale)
    else:
        core = _decoder_core(model, timing, role, time_scale, device, context, threads,
                             stream_interval, prefill_lead / 1000)
    try:
        serve_forever(EngineServer(core, f"{role.value}-{port}", bootstrap_port).app(), port)
    except PortError as exc:
        fail(f"error: {exc}")


def _decoder_core(model: str, timing: EngineTiming, role: Role, time_scale: float,
                  device: Device, context: int | None, threads: int | None,
                  stream_interval: int, lead: float) -> EngineCore:
    """The `--model` engine: real passes, so no time scale; exit 2 without PyTorch."""
    if time_scale != 1:
        fail(f"error: --time-scale {time_scale:g} cannot apply to real forward passes "
             "(--model): they take the time they take; leave --time-scale at 1")
    if context is not None and context < 0:
        fail(f"error: --context must be 0 or more, not {context}")
    if threads is not None and threads < 1:
        fail(f"error: --threads must be at least 1, not {threads}")
    from fluidgate.calibration.architectures import architecture
    from fluidgate.calibration.measure import MeasureError, require_torch
    from fluidgate.harness.passes import decoder_core

    try:
        arch = architecture(model)
        torch = require_torch("the engine's --model mode")
        if threads is not None or device is not Device.CUDA:
            torch.set_num_threads(threads or 1)  # this process's, for its whole life
        core = decoder_core(arch, timing, role is Role.MIXED, device.value, context,
                            stream_interval, lead)
    except (MeasureError, ValueError) as exc:
        fail(f"error: {exc}")
    # on stderr (stdout's first line announces the port): which passes this engine runs
    Console(stderr=True, highlight=False).print(
        f"real forward passes of {model} on {core.passes.device}", markup=False)
    return core


def _spec(path: Path) -> ControllerSpec:
    from fluidgate.controllers.spec import SpecError, load_spec

    try:
        return load_spec(path)
    except SpecError as exc:
        fail(f"error: {exc}")


def _urls(values: list[str], option: str) -> list[str]:
    out = [u.strip() for v in values for u in v.split(",") if u.strip()]
    for u in out:
        if not u.startswith(("http://", "https://")):
            fail(f"error: {option} {u!r} is not an http:// or https:// URL")
    return out


def gateway(
    spec_file: Annotated[Path, typer.Argument(metavar="SPEC", show_default=False,
                                              help="A controller spec (fluidgate.controller/v2)"
                                              " for this cluster size.")],
    mixed: Annotated[list[str], typer.Option(help="A mixed (prefill + decode) engine's base "
                                             "URL; repeat it, or separate URLs by commas.",
                                             show_default=False)],
    solo: Annotated[list[str] | None, typer.Option(help="A decode-only engine's base URL; "
                                                   "repeat it, or separate by commas.",
                                                   show_default=False)] = None,
    port: Annotated[int, typer.Option(help="Loopback port; 0 picks a free one.")] = 0,
    time_scale: Annotated[float, typer.Option(help="Model seconds per wall second (patience "
                                              "and latencies are model seconds).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the router's and patience draws.")] = 0,
    protocol: Annotated[Handoff, typer.Option(
        help="How a request goes from prefill to decode: vllm (two steps, "
        "kv_transfer_params, as vLLM's disaggregated proxy) or sglang (both halves at once "
        "in a bootstrap room, as SGLang's router).")] = Handoff.VLLM,
    bootstrap_port: Annotated[list[int] | None, typer.Option(
        metavar="PORT", help="--protocol sglang: the KV bootstrap port of the mixed engines, "
        "once for all or once per --mixed in order (default: each engine's own port, as "
        "emulated engines answer there).", show_default=False)] = None,
    streamed_prefill: Annotated[bool, typer.Option(
        help="Stream each prefill step and free its engine's prefill slot when the engine "
        "announces the prefill's end (an extension of fluidgate's emulated engines with "
        "--prefill-lead; real engines get vLLM's non-streamed prefill).")] = False,
) -> None:
    """Run the gateway: per-class queues, the spec's gate and router, /metrics.

    Classifies requests as the spec says (the X-Fluidgate-Class header, else its rules on
    model, header and prompt length, else the nearest class), admits prefills with the runtime
    gate, places decodes with the router and hands them over with vLLM's or SGLang's
    disaggregation protocol (--protocol), abandons requests
    whose patience runs out (429), fails over dead engines (502, counted as failed).
    Prometheus metrics on /metrics. Exit 2 on a bad option or file, or a port taken.
    """
    need_libraries()
    positive("--time-scale", time_scale)
    spec = _spec(spec_file)
    mixed_urls, solo_urls = _urls(mixed, "--mixed"), _urls(solo or [], "--solo")
    if not mixed_urls:
        fail("error: give at least one --mixed engine (prefills run there)")
    from fluidgate.harness.gateway import Gateway
    from fluidgate.harness.serve import PortError, serve_forever

    try:
        gw = Gateway(spec, mixed_urls, solo_urls, time_scale, seed,
                     streamed_prefill=streamed_prefill, handoff=protocol,
                     bootstrap_ports=bootstrap_port)
    except ValueError as exc:
        fail(f"error: {exc}")
    try:
        serve_forever(gw.app(), port)
    except PortError as exc:
        fail(f"error: {exc}")


def load(
    spec_file: Annotated[Path, typer.Argument(metavar="SPEC", show_default=False,
                                              help="A controller spec: the classes, their "
                                              "rates per GPU and the cluster size.")],
    target: Annotated[str, typer.Option(help="The gateway's base URL.", show_default=False)],
    duration: Annotated[float, typer.Option(help="Model seconds of arrivals.",
                                            show_default=False)],
    out: Annotated[Path, typer.Option(help="Write one JSON line per request here.",
                                      show_default=False)],
    time_scale: Annotated[float, typer.Option(help="Model seconds per wall second.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the arrival and patience draws.")] = 0,
    trace: Annotated[Path | None, typer.Option(
        help="Replay this request trace instead of Poisson arrivals: Azure LLM inference "
        "CSV, Mooncake JSON lines, or a plain CSV arrival,prompt,output[,patience].",
        show_default=False)] = None,
    trace_format: Annotated[str, typer.Option(
        help="The trace's format: auto (told by its first line), azure, mooncake or "
        "plain.")] = "auto",
    speed: Annotated[float, typer.Option(help="Trace seconds per model second (2: replay "
                                         "twice as fast).")] = 1.0,
    offset: Annotated[float, typer.Option(help="Start the replay this many trace seconds "
                                          "after the trace's first request.")] = 0.0,
    limit: Annotated[int | None, typer.Option(help="Send at most this many trace requests.",
                                              show_default=False)] = None,
) -> None:
    """Send open-loop Poisson arrivals per class at the spec's rates (or replay a trace),
    and record each.

    Each request streams and carries its class and a patience drawn from its class's mean.
    A replayed request gets the class the spec's classification gives its prompt and output
    lengths (else the nearest class) and the trace's patience if it has one. The JSONL has
    class, send time, TTFT, token chunk times, tokens and outcome (served, abandoned,
    rejected, failed) per request, all in model seconds.
    """
    need_libraries()
    positive("--duration", duration)
    positive("--time-scale", time_scale)
    if not target.startswith(("http://", "https://")):
        fail(f"error: --target {target!r} is not an http:// or https:// URL")
    replay_options(trace, trace_format, speed, offset, limit)
    spec = _spec(spec_file)
    import asyncio

    from fluidgate.atomic import OutputError, write_output
    from fluidgate.harness.load import LoadRun, jsonl, poisson_arrivals
    from fluidgate.harness.report import measured_block, request_counts

    try:
        if trace is None:
            arrivals = poisson_arrivals(spec, duration, seed)
        else:
            arrivals = replay_arrivals(spec, trace, trace_format, duration, seed, speed,
                                       offset, limit)
    except ValueError as exc:
        fail(f"error: {exc}")
    records = asyncio.run(LoadRun(spec, target, arrivals, time_scale).run(_progress()))
    inputs = [spec_file] if trace is None else [spec_file, trace]
    try:
        write_output(out, jsonl(records), inputs=inputs)
    except OutputError as exc:
        fail(f"error: {exc}")
    block = measured_block(spec, records, duration)
    counts = request_counts(records)
    typer.echo(" ".join(f"{k}={v}" for k, v in counts.items())
               + f" revenue_per_gpu={block['revenue_per_gpu']:.4g}")


def replay_arrivals(spec: ControllerSpec, path: Path, kind: str, duration: float, seed: int,
                    speed: float, offset: float, limit: int | None) -> list[Any]:
    """The trace's arrivals (`load.trace_arrivals`), with a line saying how they split;
    `kind` is a format `replay_options` accepted."""
    from collections import Counter

    from fluidgate.harness.load import trace_arrivals
    from fluidgate.planning.traces import TraceError, TraceFormat, read_trace

    try:
        replayed = read_trace(path, TraceFormat(kind))
    except TraceError as exc:
        fail(f"error: {exc}")
    arrivals = trace_arrivals(spec, replayed, duration, seed, speed, offset, limit)
    counts = Counter(a.cls for a in arrivals)
    split = ", ".join(f"{c.name} {counts[i]}" for i, c in enumerate(spec.classes))
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"replaying {len(arrivals):,} requests of {path} ({replayed.format.value}): {split}",
        markup=False)
    return arrivals


def _progress() -> Callable[[Any], None]:
    console = Console(stderr=True, highlight=False)

    def show(run: Any) -> None:
        done = sum(r.outcome == "served" for r in run.records)
        console.print(f"\rsent {len(run.records)}/{len(run.arrivals)}  served {done}",
                      end="", markup=False)
        if len(run.records) == len(run.arrivals):
            console.print("", markup=False)
    return show


class EngineKind(StrEnum):
    EMULATED = "emulated"
    VLLM = "vllm"
    SGLANG = "sglang"


def harness(
    policy_file: Annotated[Path, typer.Argument(metavar="POLICY", show_default=False,
                                                help="The policy (.sli) to solve and run.")],
    gpus: Annotated[int, typer.Option(help="N: engines to start (mixed and solo, as the "
                                      "plan splits them).", show_default=False)],
    duration: Annotated[float, typer.Option(help="Model seconds of arrivals.",
                                            show_default=False)],
    out: Annotated[Path, typer.Option(help="Directory for report.json, requests.jsonl, the "
                                      "plot and logs (created; its parent must exist).",
                                      show_default=False)],
    engine_kind: Annotated[EngineKind, typer.Option(
        "--engine", help="emulated: engines that follow the calibrated τ; vllm, sglang: real "
        "servers on this machine's NVIDIA GPUs.")] = EngineKind.EMULATED,
    model: Annotated[str | None, typer.Option(
        metavar="PATH|SHAPE", help="Real engines: a model directory, or a shape (llama3-8b, "
        "qwen3-8b, qwen3-4b, qwen3-0.6b, …) to serve with random weights and token-id "
        "prompts, so nothing is downloaded. Emulated engines: a calibration decoder (tiny, "
        "small, qwen3-0.6b, …) whose real forward passes time each iteration ('fluidgate "
        "engine --model'; needs PyTorch, and --time-scale stays 1).",
        show_default=False)] = None,
    engines_per_gpu: Annotated[int, typer.Option(
        help="Real engines: how many share one GPU (each gets that share of its "
        "memory).")] = 1,
    start_timeout: Annotated[float, typer.Option(
        help="Real engines: wall seconds each may take to answer /health.")] = 600.0,
    time_scale: Annotated[float, typer.Option(help="Model seconds per wall second "
                                              "(emulated engines only).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed of the load, the gateway and the "
                                      "simulator.")] = 0,
    stream_interval: Annotated[int, typer.Option(help="Tokens per streamed chunk.")] = 50,
    prefill_lead: Annotated[float, typer.Option(
        help="Wall milliseconds of prefill work ahead of a prefill's end at which its engine "
        "announces it, so the gateway's round trip for the next prefill is off the critical "
        "path (0: when it ends; emulated engines only).")] = 20.0,
    simulate: Annotated[bool, typer.Option(help="Run the iteration simulator at the same "
                                           "N, seed and duration for the report.")] = True,
    trace: Annotated[Path | None, typer.Option(
        help="Replay this request trace instead of Poisson arrivals (as 'fluidgate load "
        "--trace': Azure CSV, Mooncake JSON lines, or plain CSV "
        "arrival,prompt,output[,patience]).", show_default=False)] = None,
    trace_format: Annotated[str, typer.Option(
        help="The trace's format: auto, azure, mooncake or plain.")] = "auto",
    speed: Annotated[float, typer.Option(help="With --trace: trace seconds per model "
                                         "second.")] = 1.0,
    offset: Annotated[float, typer.Option(help="With --trace: start this many trace seconds "
                                          "after its first request.")] = 0.0,
) -> None:
    """Solve a policy, start N engines and the gateway, run the load, report.

    Engines are emulated (with --model: on real forward passes of a calibration decoder), or
    real vLLM or SGLang servers on this machine's GPUs (CUDA_VISIBLE_DEVICES narrows which).
    The load is Poisson at the plan's rates, or a replayed --trace. Writes DIR/report.json
    with measured, predicted (the LP at N) and simulated (the iteration simulator at N)
    blocks of the same shape and the request accounting, plus DIR/requests.jsonl and
    DIR/measured_vs_predicted.png. Every child process is stopped at the end, also on
    Ctrl-C. Exit 2 on bad input or a missing engine program or GPU, 3 infeasible, 4 solver
    failure.
    """
    from fluidgate.harness.main import TraceReplay, run_command

    need_libraries()
    positive("--duration", duration)
    positive("--time-scale", time_scale)
    if gpus < 1:
        fail(f"error: --gpus must be at least 1, not {gpus}")
    if stream_interval < 1:
        fail(f"error: --stream-interval must be at least 1, not {stream_interval}")
    lead_option(prefill_lead)
    replay_options(trace, trace_format, speed, offset)
    from fluidgate.harness.prereqs import MissingPrerequisite, real_engines

    try:
        real = real_engines(engine_kind, gpus, model, engines_per_gpu, start_timeout,
                            time_scale)
    except (MissingPrerequisite, ValueError) as exc:
        fail(f"error: {exc}")
    replay = None if trace is None else TraceReplay(trace, trace_format, speed, offset)
    run_command(policy_file, gpus, duration, out, time_scale, seed, stream_interval,
                prefill_lead, simulate, real, replay,
                model if engine_kind is EngineKind.EMULATED else None)


def mount(app: typer.Typer) -> None:
    """Add the harness commands to the main application (idempotent)."""
    if any(c.name == "engine" for c in app.registered_commands):
        return
    app.command(name="engine", short_help="Run an emulated engine timed by calibrated "
                "curves.")(engine)
    app.command(name="gateway", short_help="Run the gate and router in front of "
                "OpenAI-compatible engines.")(gateway)
    app.command(name="load", short_help="Send Poisson load or replay a trace; record each "
                "request.")(load)
    app.command(name="harness", short_help="Run a policy on emulated or real engines; "
                "measured vs predicted.")(harness)
