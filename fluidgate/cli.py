"""The `fluidgate` command line: a thin shell over the library's stages.

Exit status: 0 success, 2 the input is wrong (policy, calibration file, arguments),
3 the policy is infeasible, 4 the solver could not run or failed, 1 a bug in fluidgate.
"""

from __future__ import annotations

import math
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

from fluidgate import __version__
from fluidgate.diagnostics import Diagnostic, PolicyError
from fluidgate.schemas import SchemaName
from fluidgate.textsafe import safe_text
from fluidgate.wording import plural

if TYPE_CHECKING:  # the CLI imports stages lazily; these are for annotations only
    from rich.progress import Progress

    from fluidgate.conflict import Conflict
    from fluidgate.controllers.spec import ControllerSpec
    from fluidgate.model import Policy
    from fluidgate.solution import Solution

EXIT_INPUT, EXIT_INFEASIBLE, EXIT_SOLVER = 2, 3, 4

app = typer.Typer(
    name="fluidgate",
    help=(
        "Write an LLM-serving service-level policy, solve the fluid LP for the best "
        "admission-and-routing plan, and check it.\n\n"
        "Start with:  fluidgate check policy.sli  then  fluidgate solve policy.sli"
    ),
    epilog=(
        "\b\nExit status (every command; its --help lists those it uses):\n"
        "  0  success\n  1  a bug in fluidgate (FLUIDGATE_DEBUG=1 shows the traceback)\n"
        "  2  the input is wrong: a policy, a file or an option\n"
        "  3  the policy is infeasible\n  4  the solver is unavailable or failed"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # Click's plain help: option names and metavars, no Python types
)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _say(console: Console, message: str) -> None:
    """Print a message that may quote user text: control characters are shown escaped."""
    console.print(safe_text(message, multiline=True), markup=False)


def _fail(message: str, code: int) -> NoReturn:
    _say(_stderr(), message)
    raise typer.Exit(code)


def _policy_error(exc: PolicyError) -> NoReturn:
    _fail(exc.render(), EXIT_INPUT)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fluidgate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """fluidgate: optimal admission and routing for LLM serving fleets."""


# Described in each command's help text: an argument's help line would show a Python type.
PolicyArg = Annotated[Path, typer.Argument(hidden=True, show_default=False, metavar="POLICY")]


def _load(path: Path) -> tuple[Policy, list[Diagnostic]]:
    from fluidgate.sli_dsl.loader import load_policy

    try:
        checked = load_policy(path)
    except PolicyError as exc:
        _policy_error(exc)
    return checked.policy, checked.warnings


class SolverName(StrEnum):
    """The LP backends (`fluidgate.solvers.registry.SOLVER_NAMES`)."""

    HIGHS = "highs"
    GUROBI = "gurobi"


class Method(StrEnum):
    """HiGHS's algorithm: its own choice, the simplex method, or interior point."""

    AUTO = "auto"
    SIMPLEX = "simplex"
    IPM = "ipm"


def _exit_codes(*lines: str) -> str:
    """The epilog every command ends its help with, so a script writer sees every status."""
    return "\b\nExit status:\n" + "\n".join(f"  {line}" for line in lines)


_EXIT_OK = "0  success"
_EXIT_BUG = "1  a bug in fluidgate (FLUIDGATE_DEBUG=1 shows the traceback)"
_EXIT_INPUT = "2  the input is wrong: the policy, a file or an option"


@app.command(short_help="Parse and check policies, without solving them.",
             epilog=_exit_codes(_EXIT_OK + " (every file is valid)", _EXIT_BUG,
                                "2  a file is missing or has an error (each one is reported)"))
def check(
    policies: Annotated[list[Path], typer.Argument(hidden=True, show_default=False,
                                                   metavar="POLICY")],
) -> None:
    """Parse and check policy files (POLICY...): syntax, names, units, and that every SLO
    is linear.

    Prints every problem found as file:line:col with the source line, and for each
    valid file "FILE: ok" with its number of classes and SLO constraints.
    """
    from fluidgate.formulations.slo_compile import compile_all
    from fluidgate.sli_dsl.loader import load_policy
    from fluidgate.sli_dsl.parser import PolicyParser

    parser = PolicyParser()
    failed = False
    out = Console(highlight=False, soft_wrap=True)  # piped output is never re-wrapped
    for path in policies:
        try:
            checked = load_policy(path, parser)
            policy = checked.policy
            compiled = compile_all(policy)
            if compiled.errors:
                raise PolicyError(compiled.errors, policy.source_text)
        except PolicyError as exc:
            _say(_stderr(), exc.render())
            failed = True
            continue
        for w in checked.warnings:
            _say(_stderr(), w.render(policy.source_text))
        # Short enough not to wrap at 80 columns (pricing and objective: `explain`).
        _say(out, f"{safe_text(str(path))}: ok — {plural(len(policy.classes), 'class')}, "
                  f"{plural(len(policy.slos), 'SLO constraint')}")
    if failed:
        raise typer.Exit(EXIT_INPUT)


@app.command(short_help="Solve a policy's fluid LP and print the optimal plan.",
             epilog=_exit_codes(
                 _EXIT_OK + " (an optimal plan)", _EXIT_BUG,
                 _EXIT_INPUT,
                 "3  the policy is infeasible: the conflicting SLOs are named",
                 "4  the solver is unavailable or failed (not installed, no",
                 "   licence, size limit, time limit)"))
def solve(
    policy_file: PolicyArg,
    solver: Annotated[SolverName, typer.Option(
        "--solver", "-s", case_sensitive=False, metavar="[highs|gurobi]",
        help="LP solver: highs (built in) or gurobi (needs gurobipy).")] = SolverName.HIGHS,
    json_out: Annotated[str | None, typer.Option(
        "--json", metavar="FILE", help="Also write the solution document "
        "(fluidgate.solution/v1) to FILE; '-' writes it to standard output instead of the "
        "table.", show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No table, only errors.")] = False,
    all_classes: Annotated[bool, typer.Option(
        "--all-classes", help="Print every class and service level; by default a policy "
        "with more than 25 classes shows the busiest and a total of the rest (--json "
        "always has every class).")] = False,
    time_limit: Annotated[float | None, typer.Option(
        metavar="SECONDS", help="Stop the solver after SECONDS (exit 4).",
        show_default=False)] = None,
    method: Annotated[Method, typer.Option(
        case_sensitive=False, metavar="[auto|simplex|ipm]",
        help="HiGHS algorithm; ipm (interior point) is faster beyond ~10,000 classes.")]
        = Method.AUTO,
    controller_out: Annotated[str | None, typer.Option(
        "--controller", metavar="FILE", help="Also write the controller spec "
        "(fluidgate.controller/v2) for the runtime gate and router and the exporters to "
        "FILE; only an optimal, verified plan has one.", show_default=False)] = None,
) -> None:
    """Solve a policy's fluid LP (POLICY: a .sli file) and print the optimal plan.

    The table shows R* (the best revenue any policy can reach on a large cluster), the
    static plan (how many GPUs take prefills), and per class what the plan admits, serves
    and lets abandon. Exit 3 names the SLOs that conflict when the policy is infeasible.
    """
    from fluidgate.solvers.base import SolveOptions, SolverUnavailable
    from fluidgate.solvers.registry import SOLVER_NAMES

    if method not in ("auto", "simplex", "ipm"):
        _fail(f"error: --method must be auto, simplex or ipm, not '{method}'", EXIT_INPUT)
    if time_limit is not None and not (math.isfinite(time_limit) and time_limit > 0):
        _fail(f"error: --time-limit must be a positive number of seconds, not {time_limit}",
              EXIT_INPUT)
    if solver.lower() not in SOLVER_NAMES:
        _fail(f"error: unknown solver '{solver}'; choose one of {', '.join(SOLVER_NAMES)}",
              EXIT_INPUT)
    policy, warnings = _load(policy_file)
    if json_out is not None:
        _check_json_target(policy, json_out, policy_file)
    if controller_out is not None:
        _check_controller_target(policy, controller_out, json_out, policy_file)
    from fluidgate.pipeline import solve_policy

    for w in warnings:
        _say(_stderr(), w.render(policy.source_text))
    bars: list[Progress] = []  # only an infeasible policy ever shows the bar: made then

    def on_progress(done: int, total: int) -> None:
        if not bars:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            err = _stderr()
            bars.append(Progress(
                "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), console=err, transient=True,
                disable=quiet or not err.is_terminal))  # piped: no bar, no blank line
            bars[0].add_task("infeasible: finding the SLOs that conflict and how far to "
                             "move them", total=None)
            bars[0].start()
        bars[0].update(bars[0].task_ids[0], completed=done, total=total)

    try:
        sol = solve_policy(policy, solver, SolveOptions(time_limit=time_limit, method=method),
                           on_progress)
    except SolverUnavailable as exc:
        _fail(f"error: {exc}", EXIT_SOLVER)
    except PolicyError as exc:
        _policy_error(exc)
    finally:
        for bar in bars:
            bar.stop()
    if json_out is not None:
        _write_json(sol, json_out, _inputs(policy, policy_file))
    if sol.optimal and controller_out is not None:
        written = [json_out] if json_out not in (None, "-") else []
        _write_controller(sol, policy_file, controller_out,
                          [*_inputs(policy, policy_file), *written])
    if sol.optimal:
        if not quiet and str(json_out) != "-":
            from fluidgate.report import render_solution

            render_solution(sol, Console(), all_classes)
            if json_out is not None:
                _say(Console(), f"solution written to {json_out}")
            if controller_out is not None:
                _say(Console(), f"controller spec written to {controller_out}")
        return
    _fail_unsolved(sol)


def _fail_unsolved(sol: Solution) -> NoReturn:
    """Exit with the status and message of a solve that ended without an optimal plan."""
    from fluidgate.solvers.base import TerminationStatus

    if sol.status in (TerminationStatus.INFEASIBLE, TerminationStatus.INFEASIBLE_OR_UNBOUNDED):
        _fail(_infeasible_message(sol), EXIT_INFEASIBLE)
    if sol.status is TerminationStatus.UNVERIFIED:
        _fail(f"{sol.policy.source_file}: error: {sol.message}", EXIT_SOLVER)
    if sol.status is TerminationStatus.UNBOUNDED:
        _fail(f"error: {sol.solver} reports the LP unbounded; a policy should never allow "
              "unbounded revenue, so please report this policy as a fluidgate bug", EXIT_SOLVER)
    _fail(f"error: {sol.solver} did not solve the policy: {sol.message} "
          f"(status {sol.status.value})", EXIT_SOLVER)


def _inputs(policy: Policy, policy_file: Path) -> list[str | Path]:
    """The files a solve reads: an output may be none of them."""
    inputs: list[str | Path] = [policy_file]
    if policy.cluster.iteration.source != "inline":
        inputs.append(policy.cluster.iteration.source)
    inputs.extend(policy.class_tables)
    return inputs


def _check_json_target(policy: Policy, target: str, policy_file: Path) -> None:
    """Refuse a `--json` target before solving, not after a long solve."""
    from fluidgate.atomic import OutputError, check_output

    try:
        check_output(target, inputs=_inputs(policy, policy_file), allow_stdout=True)
    except OutputError as exc:
        _fail(f"error: {exc}", EXIT_INPUT)


def _write_json(sol: Solution, target: str, inputs: list[str | Path]) -> None:
    """The document goes to `target` under `fluidgate.atomic`'s rules (exit 2 on refusal)."""
    from fluidgate.atomic import OutputError
    from fluidgate.document import write_solution

    try:
        write_solution(sol, target, inputs=inputs)
    except OutputError as exc:
        _fail(f"error: {exc}", EXIT_INPUT)


def _infeasible_message(sol: Solution) -> str:
    pol = sol.policy
    conflict = sol.conflict
    if conflict is not None and conflict.unverified:
        other = "highs" if sol.solver == "gurobi" else "gurobi"
        return (
            f"{pol.source_file}: error: the policy is infeasible (the solver's certificate "
            "was verified), but the search for the service levels that conflict could not be "
            f"verified: a trial solve failed ({conflict.unverified}); no conflict is named "
            "rather than one that may be wrong.\n"
            f"    hint: try --solver {other}, or remove service levels one at a time to find "
            "the conflict by hand"
        )
    if conflict is None or (not conflict.items and not conflict.base_infeasible):
        return f"{pol.source_file}: error: the policy is infeasible ({sol.message})"
    if conflict.base_infeasible:
        names = ", ".join(f"'{n}'" for n in conflict.impatient_classes) or "none"
        return (
            f"{pol.source_file}: error: the cluster cannot carry this traffic even without "
            f"service levels: classes without patience ({names}) must all be served, and "
            f"{plural(pol.cluster.gpus, 'GPU')} {'is' if pol.cluster.gpus == 1 else 'are'} "
            "not enough.\n"
            "    hint: give those classes a 'patience', lower their rate, or add GPUs"
        )
    return _conflicts_message(pol, conflict)


def _conflicts_message(pol: Policy, conflict: Conflict) -> str:
    """Every conflict with its lines, what is exactly true of each, and how far to move."""
    groups = conflict.groups
    if conflict.more:
        n = len(groups)
        lines = [f"{pol.source_file}: error: the service levels below form at least "
                 f"{n} conflict{'s' if n != 1 else ''}, and more remain among the other "
                 "lines (the search stops there: resolve these and solve again); removing any "
                 "one line of a conflict resolves that conflict:"]
        held = "the other lines of its conflict held and every other line set aside"
    elif len(groups) == 1:
        lines = [f"{pol.source_file}: error: these service levels cannot all hold together "
                 "(removing any one of them resolves this conflict):"]
        held = "every other line held"
    else:
        lines = [f"{pol.source_file}: error: the service levels below form {len(groups)} "
                 "conflicts; removing any one line of a conflict resolves that conflict, and "
                 "removing all of them makes the policy feasible:"]
        held = "the other conflicts' lines set aside and every other line held"
    for g, group in enumerate(groups, start=1):
        if len(groups) > 1 or conflict.more:
            lines.append(f"conflict {g}:" if conflict.more else f"conflict {g} of {len(groups)}:")
        for item in group:
            lines.append(Diagnostic(f"conflicting: {item.label}", item.span)
                         .render(pol.source_text))
        lines.append(f"    nearest feasible bounds, each with {held}:")
        lines.extend(f"        {item.nearest_text()}" for item in group)
    return "\n".join(lines)


@app.command(short_help="Show the LP row each SLO became, to audit the translation.",
             epilog=_exit_codes(_EXIT_OK, _EXIT_BUG, _EXIT_INPUT))
def explain(policy_file: PolicyArg) -> None:
    """Show the LP constraint each SLO of POLICY (a .sli file) became, in readable maths.

    Variables are per GPU: x_i (GPUs prefilling class i), y_m,i and y_s,i (decodes on
    mixed and solo GPUs), q_p,i and q_d,i (waiting for prefill and decode).
    """
    from fluidgate.explain import explain_policy

    policy, _ = _load(policy_file)
    try:
        text = explain_policy(policy)
    except PolicyError as exc:
        _policy_error(exc)
    _say(Console(highlight=False, soft_wrap=True), text)


def _check_controller_target(policy: Policy, target: str, json_out: str | None,
                             policy_file: Path) -> None:
    """Refuse a `--controller` target before solving: never over an input, nor over the
    `--json` file of the same run."""
    from fluidgate.atomic import OutputError, check_output

    others: list[str | Path] = [json_out] if json_out not in (None, "-") else []
    try:
        check_output(target, inputs=[*_inputs(policy, policy_file), *others])
    except OutputError as exc:
        _fail(f"error: {exc}", EXIT_INPUT)


def _write_controller(sol: Solution, policy_file: Path, target: str,
                      inputs: list[str | Path]) -> None:
    """The spec goes to `target` under `fluidgate.atomic`'s rules (exit 2 on refusal)."""
    from fluidgate.atomic import OutputError
    from fluidgate.controllers.build import build_spec
    from fluidgate.controllers.spec import SpecError, write_spec

    try:
        spec = build_spec(sol, policy_file)
    except SpecError as exc:  # a verified optimum always makes a valid spec
        _fail(f"internal error: {exc}\nThis is a bug in fluidgate; please report it.", 1)
    try:
        write_spec(spec, target, inputs)
    except OutputError as exc:
        _fail(f"error: {exc}", EXIT_INPUT)


@app.command(short_help="Print the JSON Schema of a document fluidgate writes or reads.",
             epilog=_exit_codes(_EXIT_OK, _EXIT_BUG, _EXIT_INPUT))
def schema(
    name: Annotated[SchemaName, typer.Argument(
        case_sensitive=False, metavar="DOCUMENT",
        help="controller (fluidgate.controller/v2, from solve --controller), solution "
        "(fluidgate.solution/v1, from solve --json), calibration "
        "(fluidgate.calibration/v1, from calibrate fit), simulation "
        "(fluidgate.simulation/v1, from simulate --json) or validation "
        "(fluidgate.validation/v1, report.json from validate --out).",
        show_default=False)],
    check_file: Annotated[Path | None, typer.Option(
        "--check", metavar="FILE", help="Instead of printing the schema, check FILE against "
        "it: exit 0 if it is valid, 2 with the offending field named if not.",
        show_default=False)] = None,
) -> None:
    """Print the JSON Schema (draft 2020-12) of a fluidgate document, generated from the
    model that loads it, for validating documents in other programs; or check a file."""
    from fluidgate.schemas import DocumentError, check_document, schema_text

    if check_file is None:
        typer.echo(schema_text(name), nl=False)
        return
    try:
        summary = check_document(name, check_file)
    except DocumentError as exc:
        _fail(f"error: {exc}", EXIT_INPUT)
    _say(Console(highlight=False, soft_wrap=True), summary)


@app.command(short_help="Turn a controller spec into a serving stack's configuration.",
             epilog=_exit_codes(
                 _EXIT_OK, _EXIT_BUG,
                 "2  the input is wrong: the spec (the field is named), the policy,",
                 "   the target, or the --out directory",
                 "3  POLICY only: the policy is infeasible",
                 "4  POLICY only: the solver is unavailable or failed"))
def export(
    source: Annotated[Path, typer.Argument(
        help="A controller spec (fluidgate.controller/v2 JSON, from solve --controller), or "
             "a policy (.sli) to solve first.", show_default=False, metavar="SPEC|POLICY")],
    target: Annotated[str, typer.Option(
        "--target", "-t", metavar="TARGET", show_default=False,
        help="vllm, sglang, dynamo, llm-d, json or yaml.")],
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", metavar="DIR", show_default=False,
        help="Write the files into DIR, all or nothing (a new or empty directory); "
             "default: print them.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace DIR when it is not empty.")] = False,
    solver: Annotated[SolverName, typer.Option(
        "--solver", "-s", case_sensitive=False, metavar="[highs|gurobi]",
        help="LP solver when the input is a policy.")] = SolverName.HIGHS,
) -> None:
    """Turn a controller spec (or a policy, solved first) into a serving stack's config.

    Writes engine arguments, replica counts per pool, per-class priorities or manifests,
    and README.txt listing every rule of the plan the stack cannot express (the runtime
    gate provides those). The stack versions checked are named in the output.
    """
    from fluidgate.controllers.export.command import (
        ExportInputError,
        check_request,
        deliver,
        read_spec,
    )

    try:
        chosen = check_request(target, out, force, [source])
        if source.suffix == ".sli":
            spec, inputs = solved_spec(source, solver)
        else:
            spec, inputs = read_spec(source), [source]
        outcome = deliver(spec, chosen, out, force, inputs, str(source))
    except ExportInputError as exc:
        _fail(f"error: {exc}", EXIT_INPUT)
    if outcome.stdout:
        typer.echo(outcome.stdout, nl=False)
    if outcome.stderr:
        _stderr().print(outcome.stderr.rstrip("\n"), markup=False)


def solved_spec(policy_file: Path, solver: SolverName) -> tuple[ControllerSpec, list[Path]]:
    """Solve a policy and build its spec, for every command that takes a policy where a spec
    will do (export, simulate, validate, harness); exits 2, 3 or 4 as `solve` would."""
    from fluidgate.controllers.build import build_spec
    from fluidgate.controllers.spec import SpecError
    from fluidgate.pipeline import solve_policy
    from fluidgate.solvers.base import SolverUnavailable

    policy, warnings = _load(policy_file)
    for w in warnings:
        _say(_stderr(), w.render(policy.source_text))
    try:
        sol = solve_policy(policy, solver.value)
    except SolverUnavailable as exc:
        _fail(f"error: {exc}", EXIT_SOLVER)
    except PolicyError as exc:
        _policy_error(exc)
    if not sol.optimal:
        _fail_unsolved(sol)
    try:
        spec = build_spec(sol, policy_file)
    except SpecError as exc:  # a verified optimum always makes a valid spec
        _fail(f"internal error: {exc}\nThis is a bug in fluidgate; please report it.", 1)
    return spec, [Path(p) for p in _inputs(policy, policy_file)]


@app.command(name="classes",
             short_help="Derive a class table from a request trace (Azure, Mooncake, CSV).",
             epilog=_exit_codes(_EXIT_OK, _EXIT_BUG,
                                "2  the trace, the template policy or an option is wrong",
                                "4  the solver is unavailable (--policy)"))
def classes_command(
    trace: Annotated[Path, typer.Argument(hidden=True, show_default=False, metavar="TRACE")],
    k: Annotated[int, typer.Option("--k", metavar="K", help="How many classes.")] = 8,
    out: Annotated[str, typer.Option("--out", "-o", metavar="FILE",
                                     help="Write the class table (CSV) to FILE.")] = "",
    fmt: Annotated[str, typer.Option(
        "--format", metavar="[auto|azure|mooncake|plain]",
        help="Trace format; auto reads it from the first line.")] = "auto",
    seed: Annotated[int, typer.Option(metavar="N", help="Seed of the k-means start.")] = 0,
    gpus: Annotated[int | None, typer.Option(
        metavar="N", help="Write rates per GPU for N GPUs (rate[/s per gpu]); by default "
        "rates are cluster-wide (rate[/s]).", show_default=False)] = None,
    patience: Annotated[float | None, typer.Option(
        metavar="SECONDS", help="Patience of every class; by default the trace's patience "
        "column (plain CSV), else none.", show_default=False)] = None,
    policy: Annotated[Path | None, typer.Option(
        "--policy", metavar="TEMPLATE", help="A policy with the cluster, pricing and SLOs "
        "to judge the grouping by: R* with K classes against --reference-k classes.",
        show_default=False)] = None,
    reference_k: Annotated[int, typer.Option(
        metavar="K", help="The finer grouping R* is compared with.")] = 64,
    plot: Annotated[str | None, typer.Option(
        "--plot", metavar="PNG", help="Draw the classes over the trace's scatter (log-log).",
        show_default=False)] = None,
) -> None:
    """Derive K traffic classes from a request trace (TRACE): the Azure LLM inference trace
    (TIMESTAMP,ContextTokens,GeneratedTokens), Mooncake JSON lines (timestamp ms,
    input_length, output_length) or a plain CSV (arrival,prompt,output[,patience]).

    Requests are grouped by k-means in log(prompt), log(output); each class has its group's
    mean prompt and output tokens and its share of the arrivals over the trace's span. The
    table is what 'classes from "FILE"' reads in a policy.
    """
    from fluidgate.atomic import OutputError
    from fluidgate.planning.command import ClassesRequest, run_classes
    from fluidgate.planning.derive import MAX_K
    from fluidgate.planning.traces import TraceError, TraceFormat
    from fluidgate.reads import ReadError
    from fluidgate.solvers.base import SolverUnavailable

    if not out:
        _fail("error: --out FILE is required: where to write the class table", EXIT_INPUT)
    if fmt not in [f.value for f in TraceFormat]:
        _fail(f"error: --format must be auto, azure, mooncake or plain, not '{fmt}'",
              EXIT_INPUT)
    for name, value, low in (("--k", k, 1), ("--reference-k", reference_k, 1),
                             ("--gpus", gpus, 1), ("--seed", seed, 0)):
        if value is not None and not low <= value <= (MAX_K if "k" in name else 10**9):
            _fail(f"error: {name} must be an integer from {low} to "
                  f"{MAX_K if 'k' in name else 10**9:,}, not {value}", EXIT_INPUT)
    if patience is not None and not (math.isfinite(patience) and patience > 0):
        _fail(f"error: --patience must be a positive number of seconds, not {patience}",
              EXIT_INPUT)
    request = ClassesRequest(trace, k, out, TraceFormat(fmt), seed, gpus, patience, policy,
                             reference_k, plot)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    err = _stderr()
    bar = Progress("[progress.description]{task.description}", BarColumn(),
                   MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True,
                   disable=not err.is_terminal)
    task = bar.add_task("reading the trace", total=None)
    try:
        with bar:
            lines = run_classes(
                request, lambda done, total: bar.update(task, completed=done, total=total),
                lambda message: bar.update(task, description=message))
    except (TraceError, ReadError, OutputError, ValueError) as exc:
        _fail(f"error: {exc}", EXIT_INPUT)
    except PolicyError as exc:
        _policy_error(exc)
    except SolverUnavailable as exc:
        _fail(f"error: {exc}", EXIT_SOLVER)
    console = Console(highlight=False, soft_wrap=True)
    for line in lines:
        _say(console, line)


def _mount_calibration() -> None:
    from fluidgate.calibration.cli import app as calibrate_app

    app.add_typer(calibrate_app, name="calibrate",
                  help="Measure, import and fit iteration times (the LP's α, β, γ).")


def mount_simulator() -> None:
    """Add `simulate` and `validate` (idempotent: tests mount them on the shared app)."""
    from fluidgate.simulator import cli as sim

    if any(c.name == "simulate" for c in app.registered_commands):
        return
    app.command(name="simulate")(sim.simulate)
    app.command(name="validate")(sim.validate)


def mount_harness() -> None:
    """Add `engine`, `gateway`, `load` and `harness` (idempotent)."""
    from fluidgate.harness.cli import mount

    mount(app)


def mount_planning() -> None:
    """Add `sweep` and `capacity` (idempotent, like `mount_simulator`)."""
    from fluidgate.planning import cli as planning

    mount_simulator()  # first, so `fluidgate --help` lists commands in one order
    mount_harness()
    if any(c.name == "sweep" for c in app.registered_commands):
        return
    app.command(name="sweep", short_help="Re-solve along one or two varied parameters.",
                epilog=_exit_codes(_EXIT_OK + " (at least one point has a plan)", _EXIT_BUG,
                                   _EXIT_INPUT, "3  no point has a plan (all infeasible)",
                                   "4  a point's solve failed or was not verified"))(
                                       planning.sweep)
    app.command(name="capacity", short_help="The fewest GPUs that meet every hard SLO.",
                epilog=_exit_codes(_EXIT_OK, _EXIT_BUG, _EXIT_INPUT,
                                   "3  no GPU count meets the SLOs (or --min-r-star)",
                                   "4  a solve failed"))(planning.capacity)


def _registered_names() -> frozenset[str]:
    return frozenset(c.name or typer.main.get_command_name(c.callback.__name__)
                     for c in app.registered_commands if c.callback is not None)


def main() -> None:
    """Console entry point: turns any unexpected exception into a one-line bug report.

    The sub-apps (calibrate, simulate, harness, sweep...) are mounted only when the command
    asked for is not one of this module's own: building their commands and importing their
    modules is a tenth of a cold `fluidgate solve` (docs/performance.md). `--help`, shell
    completion and every other command see the whole tree.
    """
    asked = sys.argv[1] if len(sys.argv) > 1 else ""
    if asked not in _registered_names():
        _mount_calibration()
        mount_simulator()
        mount_harness()
        mount_planning()
    try:
        app()
    except KeyboardInterrupt:
        _stderr().print("interrupted")
        sys.exit(130)
    except Exception as exc:  # last resort: never show users a raw traceback
        if os.environ.get("FLUIDGATE_DEBUG"):
            raise
        from fluidgate.parallel import RayUnavailable

        if isinstance(exc, RayUnavailable):  # lost mid-run (at connect each command says it)
            _say(_stderr(), f"error: {exc}")
            sys.exit(EXIT_INPUT)
        _say(_stderr(),
             f"internal error: {type(exc).__name__}: {exc}\n"
             "This is a bug in fluidgate; rerun with FLUIDGATE_DEBUG=1 for the traceback "
             "and report it.")
        sys.exit(1)
