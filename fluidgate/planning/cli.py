"""The `sweep` and `capacity` commands (mounted on the main CLI by `fluidgate.cli`).

Importing this module stays cheap: the solver, numpy and matplotlib load inside the commands.
Input problems end as exit 2, an infeasible answer as 3, a solver failure as 4.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

from fluidgate.parallel_cli import RayOpt, WorkersOpt

if TYPE_CHECKING:
    from fluidgate.model import Policy
    from fluidgate.parallel import Executor
    from fluidgate.planning.sweep import SweepResult
    from fluidgate.planning.vary import Vary

EXIT_INPUT, EXIT_INFEASIBLE, EXIT_SOLVER = 2, 3, 4
PolicyArg = Annotated[Path, typer.Argument(hidden=True, show_default=False, metavar="POLICY")]


def _fail(message: str, code: int = EXIT_INPUT) -> NoReturn:
    from fluidgate.textsafe import safe_text

    Console(stderr=True, highlight=False, soft_wrap=True).print(
        safe_text(message, multiline=True), markup=False)
    raise typer.Exit(code)


def _load(path: Path) -> Policy:
    from fluidgate.diagnostics import PolicyError
    from fluidgate.formulations.slo_compile import compile_all
    from fluidgate.sli_dsl.loader import load_policy

    try:
        policy = load_policy(path).policy
        compiled = compile_all(policy)
        if compiled.errors:
            raise PolicyError(compiled.errors, policy.source_text)
    except PolicyError as exc:
        _fail(exc.render())
    return policy


def _check_targets(targets: list[str | None], policy_file: Path) -> None:
    from fluidgate.atomic import OutputError, check_output

    named = [t for t in targets if t is not None]
    if len(set(named)) != len(named):
        _fail("error: --json, --csv and --plot must name different files")
    for t in named:
        try:
            check_output(t, inputs=[policy_file])
        except OutputError as exc:
            _fail(f"error: {exc}")


def _write(target: str, data: str | bytes, inputs: list[str | Path]) -> None:
    from fluidgate.atomic import OutputError, write_output

    try:
        write_output(target, data, inputs=inputs)
    except OutputError as exc:
        _fail(f"error: {exc}")


def sweep(
    policy_file: PolicyArg,
    vary: Annotated[list[str], typer.Option(
        "--vary", metavar="SPEC", show_default=False,
        help="What to vary and over which values, e.g. 'tpot 18ms..40ms step 1ms', "
             "'gpus 100..1000 step 100', 'rate(chat) x0.5..x2 step x0.1', "
             "'price(output) x0.5, x1, x2'. Once or twice (a grid).")],
    json_out: Annotated[str | None, typer.Option(
        "--json", metavar="FILE", show_default=False,
        help="Write {\"vary\": [...], \"points\": [...]} in sweep order to FILE.")] = None,
    csv_out: Annotated[str | None, typer.Option(
        "--csv", metavar="FILE", show_default=False,
        help="Write one row per point to FILE.")] = None,
    plot: Annotated[str | None, typer.Option(
        "--plot", metavar="FILE.png", show_default=False,
        help="Draw R* against the parameter (one --vary) or a heat map (two).")] = None,
    ray: RayOpt = None,
    workers: WorkersOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table.")] = False,
) -> None:
    """Re-solve a policy (POLICY) along one or two varied parameters.

    Each point reports R* (per GPU per second), the static plan (mixed and solo GPUs) and
    each SLO's value and shadow price. The LP is built once and re-solved warm from point
    to point; every point is verified like a fresh solve, and a point that is infeasible
    or fails its check says so instead of showing a number.
    """
    from fluidgate.planning.vary import SpecError, parse_vary

    if not 1 <= len(vary) <= 2:
        _fail("error: give --vary once or twice")
    policy = _load(policy_file)
    try:
        varies = [parse_vary(v, policy) for v in vary]
    except SpecError as exc:
        _fail(f"error: {exc.render()}")
    if len(varies) == 2 and varies[0].label == varies[1].label:
        _fail(f"error: --vary names '{varies[0].label}' twice")
    points = 1
    for v in varies:
        points *= len(v.values)
    if points > 10_000:
        _fail(f"error: the grid has {points:,} points; at most 10,000")
    if plot is not None and not plot.lower().endswith(".png"):
        _fail("error: --plot writes a PNG file; name it FILE.png")
    _check_targets([json_out, csv_out, plot], policy_file)
    from fluidgate.parallel import RayUnavailable
    from fluidgate.parallel_cli import connect
    from fluidgate.planning.sweep import to_csv, to_json

    try:
        ex = connect(ray, workers, 1)
    except RayUnavailable as exc:
        _fail(f"error: {exc}")
    result = _run(policy, varies, ex, quiet, points)
    inputs: list[str | Path] = [policy_file]
    if json_out is not None:
        _write(json_out, to_json(result), inputs)
    if csv_out is not None:
        _write(csv_out, to_csv(result), inputs)
    if plot is not None:
        from fluidgate.planning.sweep_plot import sweep_plot

        _write(plot, sweep_plot(result), inputs)
    if not quiet:
        from fluidgate.planning.table import render_sweep

        out = Console(highlight=False, soft_wrap=True)
        render_sweep(result, out)
        for target in (json_out, csv_out, plot):
            if target is not None:
                out.print(f"written to {target}", markup=False, highlight=False)
    if any(p.status not in ("optimal", "infeasible") for p in result.points):
        raise typer.Exit(EXIT_SOLVER)
    if not any(p.optimal for p in result.points):
        raise typer.Exit(EXIT_INFEASIBLE)


def _run(policy: Policy, varies: list[Vary], ex: Executor, quiet: bool,
         total: int) -> SweepResult:
    """The sweep's `total` points on `ex`, connected already (`parallel_cli.connect`), so
    a Ray cluster that cannot be reached was refused before this."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from fluidgate.planning.sweep import run_sweep

    err = Console(stderr=True)
    with Progress("sweep", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True, disable=quiet or not err.is_terminal) as bar:
        task = bar.add_task("sweep", total=total)
        return run_sweep(policy, varies, ex.workers, ex,
                         lambda done, _t: bar.update(task, completed=done))


def capacity(
    policy_file: PolicyArg,
    growth: Annotated[float, typer.Option(
        "--growth", "--rates-scale", metavar="X",
        help="Traffic multiplier: every class's rate times X (1.5: next quarter's 50 % more "
             "traffic).")] = 1.0,
    min_r_star: Annotated[float | None, typer.Option(
        "--min-r-star", metavar="V", show_default=False,
        help="Also require R* per GPU per second of at least V.")] = None,
    json_out: Annotated[str | None, typer.Option(
        "--json", metavar="FILE", show_default=False,
        help="Write the answer and every probe to FILE.")] = None,
    ray: RayOpt = None,
    workers: WorkersOpt = None,
) -> None:
    """The fewest GPUs at which every hard SLO of POLICY holds for its traffic times X.

    The cluster-wide traffic (the policy's rates on its GPU count, times --growth) is spread
    over n GPUs; each probe is a full, verified solve. The answer names what stops one GPU
    fewer (the SLO lines in conflict there) and what binds at the answer. Exit 3 when no
    count up to 10,000,000 meets the SLOs, or the fewest misses --min-r-star.
    """
    import math

    from fluidgate.parallel import RayUnavailable, default_workers
    from fluidgate.parallel_cli import connect
    from fluidgate.planning.capacity import CapacityError, find_capacity

    if not (math.isfinite(growth) and growth > 0):
        _fail(f"error: --growth must be a positive number, not {growth}")
    if min_r_star is not None and not math.isfinite(min_r_star):
        _fail("error: --min-r-star must be a finite number")
    policy = _load(policy_file)
    _check_targets([json_out], policy_file)
    err = Console(stderr=True)
    try:
        ex = connect(ray, workers, min(4, default_workers()))
        with err.status("searching", spinner="dots") if err.is_terminal else _null():
            answer = find_capacity(policy, growth, min_r_star, ex)
    except RayUnavailable as exc:
        _fail(f"error: {exc}")
    except CapacityError as exc:
        _fail(f"error: {exc}", EXIT_SOLVER)
    if json_out is not None:
        from fluidgate.planning.report import capacity_json

        _write(json_out, capacity_json(answer), [policy_file])
    from fluidgate.planning.report import render_capacity

    out = Console(highlight=False, soft_wrap=True)
    render_capacity(answer, policy, out)
    if answer.gpus is None or not answer.meets_floor:
        raise typer.Exit(EXIT_INFEASIBLE)


def _null() -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()
