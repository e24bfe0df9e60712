"""`fluidgate simulate` and `fluidgate validate`: the simulator on the command line.

Importing this module stays cheap (the main CLI imports it to build its help); numpy,
numba, matplotlib and the solver are imported inside the commands. Input problems end as
one `error: ...` message and exit status 2, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

from fluidgate.parallel_cli import RayOpt, WorkersOpt
from fluidgate.simulator.names import Fidelity, PolicyName

if TYPE_CHECKING:
    from fluidgate.controllers.spec import ControllerSpec
    from fluidgate.model import IterationCurve
    from fluidgate.parallel import Executor
    from fluidgate.simulator.report import RunRecord, ValidationReport
    from fluidgate.simulator.run import RunResult
    from fluidgate.simulator.study import StudyOptions

EXIT_INPUT, EXIT_INFEASIBLE, EXIT_SOLVER = 2, 3, 4


def _fail(message: str, code: int = EXIT_INPUT) -> NoReturn:
    from fluidgate.textsafe import safe_text

    Console(stderr=True, highlight=False, soft_wrap=True).print(
        safe_text(message, multiline=True), markup=False)
    raise typer.Exit(code)


def _load_spec(path: Path) -> ControllerSpec:
    from fluidgate.controllers.spec import SpecError, load_spec

    try:
        return load_spec(path)
    except SpecError as exc:
        _fail(f"error: {exc}")


def _check_positive(name: str, value: float | None) -> None:
    import math

    if value is not None and not (math.isfinite(value) and value > 0):
        _fail(f"error: {name} must be a positive number, not {value}")


def simulate(
    spec_file: Annotated[Path, typer.Argument(help="A controller spec (fluidgate.controller/v2)"
                                              " JSON file.", show_default=False,
                                              metavar="SPEC")],
    policy: Annotated[PolicyName, typer.Option(help="The controller to run.")] =
        PolicyName.GATE_AND_ROUTE,
    fidelity: Annotated[Fidelity, typer.Option(help="ctmc: exponential service as the fluid "
                                               "model; iteration: GPUs run real iterations."
                                               )] = Fidelity.CTMC,
    gpus: Annotated[int | None, typer.Option(help="Cluster size (default: the spec's); the "
                                             "plan's targets scale with it.",
                                             show_default=False)] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same run.")
                    ] = 0,
    duration: Annotated[float | None, typer.Option(
        help="Seconds measured after the warm-up (default: about 400,000 arrivals).",
        show_default=False)] = None,
    warmup: Annotated[float | None, typer.Option(
        help="Seconds simulated and discarded first (default: 10 × the longest mean time a "
             "request spends in one state).", show_default=False)] = None,
    trace: Annotated[Path | None, typer.Option(
        help="Replay arrivals from a CSV with header time,class,prompt,output instead of "
             "Poisson arrivals.", show_default=False)] = None,
    curves: Annotated[Path | None, typer.Option(
        help="A calibration file (fluidgate.calibration/v1) whose fitted τ_solo(b) and "
             "τ_mix(C, b) time the iteration level (default: the spec's α, β, τ_solo).",
        show_default=False)] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of running prefills over time "
                                              "against the plan's targets.",
                                              show_default=False)] = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Write the run (fluidgate.simulation/v1) here.", show_default=False)
                        ] = None,
) -> None:
    """Simulate one controller and compare what happens with the plan.

    Prints per class what was measured (admitted, served, abandonment, TTFT, TPOT and the
    prefill occupancy) next to what the spec predicts, and the revenue per GPU next to R*.
    """
    from fluidgate.simulator.config import SimulationInputError

    _check_positive("--duration", duration)
    if warmup is not None and not warmup >= 0:
        _fail(f"error: --warmup must be a number of seconds ≥ 0, not {warmup}")
    read = [p for p in (spec_file, trace, curves) if p is not None]
    for target in (json_out, plot):
        if target is not None:
            _check_target(target, read)
    spec = _load_spec(spec_file)
    if curves is not None and fidelity is not Fidelity.ITERATION:
        _fail("error: --curves times the iteration level; add --fidelity iteration")
    curve_pair = _load_curves(curves) if curves is not None else None
    try:
        result = _simulate_with_progress(spec, policy, fidelity, gpus, seed, duration, warmup,
                                         trace, curve_pair)
    except SimulationInputError as exc:
        _fail(f"error: {exc}")
    from fluidgate.simulator.summary import render_run, simulation_report

    render_run(spec, result, Console(highlight=False))
    if json_out is not None:
        from fluidgate.simulator.report import save_report

        try:
            save_report(json_out, simulation_report(spec, result), inputs=read)
        except OSError as exc:
            _fail(_write_error(json_out, exc))
    if plot is not None:
        from fluidgate.simulator.config import spec_at
        from fluidgate.simulator.plot import run_timeline

        scaled = spec_at(spec, result.gpus)
        try:
            run_timeline(result, [c.targets.prefill for c in scaled.classes], plot,
                         inputs=[*read, *([json_out] if json_out else [])])
        except OSError as exc:
            _fail(_write_error(plot, exc))


def _check_target(target: Path, inputs: list[Path]) -> None:
    from fluidgate.atomic import OutputError, check_output

    try:  # before the simulation, which can take minutes
        check_output(target, inputs=inputs)
    except OutputError as exc:
        _fail(f"error: {exc}")


def _write_error(target: Path, exc: OSError) -> str:
    from fluidgate.atomic import OutputError

    if isinstance(exc, OutputError):
        return f"error: {exc}"
    return f"error: cannot write '{target}': {exc.strerror or exc}"


def _load_curves(path: Path) -> tuple[IterationCurve, IterationCurve]:
    from fluidgate.calibration.schema import CalibrationError, load_calibration
    from fluidgate.model import IterationCurve

    try:
        calib = load_calibration(path)
    except CalibrationError as exc:
        _fail(f"error: {exc}")
    pair = []
    for name in ("solo", "mixed"):
        fit = calib.curves.get(name)
        if fit is None:
            _fail(f"error: {path}: curves.{name} is missing; the iteration level needs both "
                  "fitted curves")
        try:
            pair.append(IterationCurve.from_fit(fit.form, fit.coefficients))
        except ValueError as exc:
            _fail(f"error: {path}: curves.{name}: {exc}")
    return pair[0], pair[1]


def _simulate_with_progress(spec: ControllerSpec, policy: PolicyName, fidelity: Fidelity,
                            gpus: int | None, seed: int, duration: float | None,
                            warmup: float | None, trace_path: Path | None,
                            curves: tuple[IterationCurve, IterationCurve] | None) -> RunResult:
    from rich.progress import Progress, SpinnerColumn, TimeElapsedColumn

    from fluidgate.simulator.run import RunOptions, simulate
    from fluidgate.simulator.trace import load_trace

    trace = load_trace(trace_path) if trace_path is not None else None
    err = Console(stderr=True)
    opts = RunOptions(policy=policy, fidelity=fidelity, gpus=gpus, seed=seed,
                      duration=duration, warmup=warmup, trace=trace, curves=curves)
    with Progress(SpinnerColumn(), "[progress.description]{task.description}",
                  TimeElapsedColumn(), console=err, transient=True,
                  disable=not err.is_terminal) as bar:
        bar.add_task(f"simulating {policy} ({fidelity}); the first run compiles the loop",
                     total=None)
        return simulate(spec, opts)


def validate(
    policy_file: Annotated[Path, typer.Argument(help="A policy file in the SLI language (.sli).",
                                                show_default=False, metavar="POLICY")],
    out: Annotated[Path | None, typer.Option(
        help="Write report.json and the PNG plots as this directory (created; its parent "
             "must exist). Checked before the study runs.", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace --out if it exists and is "
                                        "not empty (all or nothing).")] = False,
    quick: Annotated[bool, typer.Option("--quick", help="A small study (n = 5, 20, 50; 2 "
                                        "seeds; short runs) for smoke tests.")] = False,
    seeds: Annotated[int | None, typer.Option(help="Seeds per (policy, n); default 5 (2 with "
                                              "--quick).", show_default=False)] = None,
    gpus: Annotated[str | None, typer.Option(help="Comma-separated cluster sizes (default "
                                             "5,20,50,200,500).", show_default=False)] = None,
    fidelity: Annotated[Fidelity, typer.Option(help="Simulator fidelity.")] = Fidelity.CTMC,
    workers: WorkersOpt = None,
    ray: RayOpt = None,
    solver: Annotated[str, typer.Option(help="LP solver.")] = "highs",
) -> None:
    """Simulate gate-and-route and the baselines across cluster sizes.

    Solves the policy first, then runs every (policy, n, seed) on all local cores (-j: how
    many; --ray: on a Ray cluster); the report is the same whatever ran it.

    Shows revenue per GPU against R* for each policy and size (mean and 95 % interval over
    seeds) and the prefill occupancy against the plan; with --out, writes report.json
    (fluidgate.validation/v1) and the plots convergence.png, occupancy.png, baselines.png.
    """
    from dataclasses import replace

    from fluidgate.parallel import RayUnavailable, default_workers
    from fluidgate.parallel_cli import connect
    from fluidgate.simulator.study import StudyOptions

    opts = StudyOptions.quick() if quick else StudyOptions()
    opts = replace(opts, fidelity=fidelity)
    if seeds is not None:
        if seeds < 1:
            _fail(f"error: --seeds must be at least 1, not {seeds}")
        opts = replace(opts, seeds=seeds)
    if gpus is not None:
        opts = replace(opts, gpus=_parse_sizes(gpus))
    if out is not None:
        from fluidgate.atomic import OutputError
        from fluidgate.controllers.export.outdir import check_directory

        try:  # minutes of simulation must not end in a refusal
            check_directory(out, force, inputs=[policy_file])
        except OutputError as exc:
            _fail(f"error: {exc}")
    try:
        ex = connect(ray, workers, default_workers())
    except RayUnavailable as exc:
        _fail(f"error: {exc}")
    spec = _solve_to_spec(policy_file, solver)
    runs = _study_with_progress(spec, opts, ex)
    from fluidgate.simulator.summary import render_study, validation_report

    report = validation_report(spec, str(policy_file), opts, runs)
    render_study(report, Console(highlight=False))
    if out is not None:
        _write_study(out, report, force, policy_file)


def _parse_sizes(text: str) -> tuple[int, ...]:
    sizes = []
    for part in text.split(","):
        try:
            n = int(part.strip())
        except ValueError:
            _fail(f"error: --gpus: '{part.strip()}' is not a whole number of GPUs")
        if n < 1:
            _fail(f"error: --gpus: {n} GPUs; every size must be at least 1")
        sizes.append(n)
    return tuple(sorted(set(sizes)))


def _solve_to_spec(policy_file: Path, solver: str) -> ControllerSpec:
    from fluidgate.cli import SolverName, solved_spec

    try:
        chosen = SolverName(solver.lower())
    except ValueError:
        _fail(f"error: unknown solver '{solver}'; choose one of "
              f"{', '.join(s.value for s in SolverName)}")
    return solved_spec(policy_file, chosen)[0]


def _study_with_progress(spec: ControllerSpec, opts: StudyOptions,
                         ex: Executor) -> list[RunRecord]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from fluidgate.simulator.config import SimulationInputError
    from fluidgate.simulator.study import run_study, tasks

    err = Console(stderr=True)
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True,
                  disable=not err.is_terminal) as bar:
        task = bar.add_task("simulating", total=len(tasks(opts)))
        try:
            return run_study(spec, opts, ex,
                             lambda done, total: bar.update(task, completed=done, total=total))
        except SimulationInputError as exc:
            _fail(f"error: {exc}")


def _write_study(out: Path, report: ValidationReport, force: bool, policy_file: Path) -> None:
    """The report and its plots appear together as `out`, or not at all."""
    from fluidgate.controllers.export.outdir import write_files
    from fluidgate.simulator import plot
    from fluidgate.simulator.report import dump_report

    names = ["convergence.png", "occupancy.png", "baselines.png"]
    files: dict[str, str | bytes] = {
        names[0]: plot.convergence(report.summary, report.r_star),
        names[1]: plot.occupancy(report.occupancy),
        names[2]: plot.baselines(report.summary, report.r_star),
        "report.json": dump_report(report.model_copy(update={"plots": names})),
    }
    try:
        write_files(out, files, force, inputs=[policy_file])
    except OSError as exc:
        _fail(_write_error(out, exc))
    Console(stderr=True).print(f"report and plots written to {out}", markup=False)

