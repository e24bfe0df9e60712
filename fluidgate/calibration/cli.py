"""`fluidgate calibrate`: measure iteration times, import them, fit the LP's constants.

Importing this module must stay cheap (the main CLI imports it to build its help), so every
heavy import (numpy, scipy, matplotlib, torch) happens inside the command that needs it.
Input problems end as one `error: ...` line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal, NoReturn

import typer

from fluidgate.wording import plural

app = typer.Typer(
    name="calibrate",
    help=(
        "Calibrate the iteration-time constants α, β, γ that the fluid LP needs.\n\n"
        "Typical use: `calibrate measure` on the serving hardware (or `calibrate import` of a"
        " serving log or published data), then `calibrate fit` to write calib.json, then"
        ' reference it from a policy with `iteration from "calib.json"` inside `cluster { }`.'
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

EXIT_INPUT = 2

# Help texts: one line per paragraph, wrapped by Click's plain formatter to the terminal.
_EXIT_CODES = (
    "\b\nExit status:\n  0  success\n  1  a bug in fluidgate (FLUIDGATE_DEBUG=1 shows the"
    " traceback)\n  2  a missing or malformed input file, or a bad option"
)
MEASURE_HELP = (
    "Time real decoder forward passes (random weights, real KV cache) on this machine.\n\n"
    "Sweeps decode-only batches of b streams (τ_solo) and batches carrying one C-token prefill"
    " chunk plus b decodes (τ_mix; b = 0 is a prefill-only batch). Each shape is warmed up,"
    " then timed --repeats times after a device synchronisation: CUDA events on a GPU,"
    " perf_counter on a CPU. The CSV records the median and p10/p90 per shape, and the"
    " device, library versions, model shape and date as comment lines. Nothing is"
    " downloaded.\n\n"
    "Needs PyTorch: pip install -e '.[calibrate]' in the fluidgate checkout.\n\n"
    "Example: fluidgate calibrate measure --model qwen3-8b --mixed-batches 0,16,63 -o m.csv"
)
IMPORT_HELP = (
    "Convert a serving log or published measurements into a measurement CSV.\n\n"
    "vllm: a log of vllm serve ... --enable-logging-iteration-details (one row per engine"
    " step). sglang: an SGLang server log; its 'Decode batch' lines give window-averaged"
    " decode-step times only, since SGLang logs no per-step times. sarathi: Sarathi-Serve"
    " osdi_figure-2_decode.csv, osdi_figure-2_prefill.csv or osdi_table-2_results.csv."
    " splitwise: Splitwise perf_model.csv (pick --model, --hardware, --tp). distserve: a"
    " DistServe profiler JSON of fitted coefficients (pick --model, --tp; its points are"
    " generated from the fit, not measured).\n\n"
    "Only the named file is read. FILE: the log or data file to convert.\n\n"
    "Example: fluidgate calibrate import vllm vllm.log --out measurements.csv"
)
FIT_HELP = (
    "Fit τ_solo(b) and τ_mix(C, b), and derive the LP's α, β, γ into a calibration file.\n\n"
    "Both curves are fitted by relative-error least squares (weights 1/y). τ_solo is affine or"
    " a hinge c + a·max(0, b − b0); τ_mix is affine in C and b, optionally with a C² term;"
    " AICc picks each form unless you force one. Then γ = 1/τ_solo(B), and α + β·C is the"
    " secant of τ_mix(·, B−1) over the chunk range, with the largest gap between line and"
    " curve reported. Prints R², median and worst relative error and a 95% interval for every"
    " coefficient, and warns about poor fits, extrapolation and left-out outliers; the"
    " warnings are also written into the JSON.\n\n"
    "FILE...: measurement CSVs or any file that import understands, recognised by"
    " content.\n\n"
    "Example: fluidgate calibrate fit osdi_figure-2_decode.csv osdi_figure-2_prefill.csv"
    " --max-batch 32 --chunk-range 256 2048 --plot fit.png --out calib.json"
)


def _echo(message: str, *, err: bool = False) -> None:
    """Print a line that may quote user text (paths, log lines): controls shown escaped."""
    from fluidgate.textsafe import safe_text

    typer.echo(safe_text(message, multiline=True), err=err)


def _fail(message: str) -> NoReturn:
    _echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_INPUT)


def _int_list(text: str, option: str, minimum: int) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        _fail(f"{option} takes comma-separated whole numbers, e.g. 1,2,4,8; got {text!r}")
    if not values or min(values) < minimum:
        _fail(f"{option} needs numbers of at least {minimum}; got {text!r}")
    return values


@app.command(
    "measure",
    help=MEASURE_HELP,
    epilog=_EXIT_CODES,
    short_help="Time decoder forward passes on this machine.",
)
def measure_command(
    out: Annotated[
        str, typer.Option("--out", "-o", metavar="FILE", help="measurement CSV to write")
    ] = "measurements.csv",
    model: Annotated[
        str,
        typer.Option(
            metavar="NAME",
            help="decoder shape to time: llama3-8b, qwen3-8b, qwen3-4b, qwen3-0.6b (GPU),"
            " small, tiny (CPU); 'auto' is llama3-8b on a GPU and tiny on a CPU",
        ),
    ] = "auto",
    device: Annotated[
        Literal["auto", "cpu", "cuda"],
        typer.Option(metavar="[auto|cpu|cuda]", help="where to run; auto prefers CUDA"),
    ] = "auto",
    dtype: Annotated[
        Literal["auto", "float32", "bfloat16", "float16"],
        typer.Option(
            metavar="[auto|float32|bfloat16|float16]",
            help="auto: bfloat16 on a GPU, float32 on a CPU",
        ),
    ] = "auto",
    batch_sizes: Annotated[
        str | None,
        typer.Option(
            metavar="LIST",
            help="decode-only batch sizes b (τ_solo); default 1,2,4,8,16,32,64,128 on a GPU,"
            " 1,2,4,8,16,32 on a CPU",
        ),
    ] = None,
    chunks: Annotated[
        str | None,
        typer.Option(
            metavar="LIST",
            help="prefill chunk sizes C in tokens (τ_mix); default 128,256,512,1024,2048 on a"
            " GPU, 32,64,128,256 on a CPU",
        ),
    ] = None,
    mixed_batches: Annotated[
        str | None,
        typer.Option(
            metavar="LIST",
            help="decodes riding along each chunk (0: prefill-only batches); default 0,16,64,127"
            " on a GPU, 0,8,31 on a CPU. Include B−1 for the B you will serve so τ_mix(C, B−1)"
            " is measured, not guessed",
        ),
    ] = None,
    context: Annotated[
        int | None,
        typer.Option(min=0, metavar="TOKENS",
                     help="tokens already cached per decode stream; default 1024"),
    ] = None,
    prefix: Annotated[
        int,
        typer.Option(
            min=0, metavar="TOKENS", help="tokens already cached for the prefilling request"
        ),
    ] = 0,
    warmup: Annotated[
        int | None,
        typer.Option(min=0, metavar="N",
                     help="untimed runs per shape; default 5 on a GPU, 2 on a CPU"),
    ] = None,
    repeats: Annotated[
        int | None,
        typer.Option(min=1, metavar="N",
                     help="timed runs per shape; default 20 on a GPU, 15 on a CPU"),
    ] = None,
    passes: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="sweeps to spread the runs over, so a burst of load from"
            " other processes hits every shape a little instead of one a lot; default 1 on a"
            " GPU, 5 on a CPU",
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="CPU threads (default 1 on a CPU: repeatable)"),
    ] = None,
    seed: Annotated[
        int, typer.Option(metavar="N", help="seed for the random weights and inputs")
    ] = 0,
    progress: Annotated[bool, typer.Option(help="show a progress bar (on standard error)")] = True,
) -> None:
    """Run the sweep with the options applied over the device's default plan."""
    from fluidgate.calibration.csvformat import render_csv
    from fluidgate.calibration.measure import (
        CPU_PLAN,
        GPU_PLAN,
        MeasureError,
        SweepPlan,
        measure,
        pick_device,
        require_torch,
    )

    _check_target(out)
    try:
        torch = require_torch()
        base = GPU_PLAN if pick_device(torch, device).type == "cuda" else CPU_PLAN
        changes: dict[str, object] = {"prefix": prefix}
        if batch_sizes is not None:
            changes["batch_sizes"] = _int_list(batch_sizes, "--batch-sizes", 1)
        if chunks is not None:
            changes["chunks"] = _int_list(chunks, "--chunks", 1)
        if mixed_batches is not None:
            changes["mixed_batches"] = _int_list(mixed_batches, "--mixed-batches", 0)
        for key, value in (
            ("context", context),
            ("warmup", warmup),
            ("repeats", repeats),
            ("passes", passes),
        ):
            if value is not None:
                changes[key] = value
        plan = SweepPlan.model_validate({**base.model_dump(), **changes})
        data = measure(model, plan, device, dtype, seed, progress, threads)
    except (MeasureError, ValueError) as exc:
        _fail(_first_line(exc))
    _write(out, render_csv(data))
    _echo(f"wrote {plural(len(data.rows), 'measurement')} to {out} ({data.metadata['device']})")


@app.command(
    "import",
    help=IMPORT_HELP,
    epilog=_EXIT_CODES,
    short_help="Convert a serving log or published data to a measurement CSV.",
)
def import_command(
    fmt: Annotated[
        Literal["vllm", "sglang", "sarathi", "splitwise", "distserve", "auto"],
        typer.Argument(
            metavar="FORMAT",
            help="vllm, sglang, sarathi, splitwise, distserve, or auto (recognise by content)",
        ),
    ],
    file: Annotated[
        Path,
        typer.Argument(hidden=True, metavar="FILE", show_default=False),
    ],
    out: Annotated[
        str, typer.Option("--out", "-o", metavar="FILE", help="measurement CSV to write")
    ] = "measurements.csv",
    model: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="model to pick from a Splitwise or DistServe file"),
    ] = None,
    hardware: Annotated[
        str | None, typer.Option(metavar="NAME", help="hardware to pick from a Splitwise file")
    ] = None,
    tp: Annotated[
        int | None, typer.Option(metavar="N", help="tensor-parallel degree to pick")
    ] = None,
    context: Annotated[
        int,
        typer.Option(
            min=1, metavar="TOKENS", help="DistServe only: context tokens per decode stream"
        ),
    ] = 1024,
) -> None:
    """Read one file in the named (or recognised) format and write our CSV."""
    from fluidgate.calibration.csvformat import MeasurementError, render_csv
    from fluidgate.calibration.importers import load
    from fluidgate.calibration.published import Selection

    _check_target(out, [file])
    try:
        data = load(file, fmt, Selection(model, hardware, tp, context))
    except MeasurementError as exc:
        _fail(str(exc))
    _write(out, render_csv(data), inputs=[file])
    kinds = {k: sum(r.kind == k for r in data.rows) for k in ("solo", "mixed", "prefill")}
    _echo(
        f"wrote {plural(len(data.rows), 'measurement')} to {out} ("
        + ", ".join(f"{n} {k}" for k, n in kinds.items() if n)
        + ")"
    )
    for note in data.notes:
        _echo(f"note: {note}", err=True)


@app.command(
    "fit",
    help=FIT_HELP,
    epilog=_EXIT_CODES,
    short_help="Fit the iteration times; write α, β, γ to a calibration file.",
)
def fit_command(
    files: Annotated[
        list[Path],
        typer.Argument(hidden=True, metavar="FILE"),
    ],
    out: Annotated[
        str, typer.Option("--out", "-o", metavar="FILE", help="calibration JSON to write")
    ] = "calib.json",
    max_batch: Annotated[
        int | None,
        typer.Option(
            min=2,
            metavar="B",
            help="B, the decode streams per GPU you will serve (vLLM --max-num-seqs);"
            " default: the largest decode batch measured",
        ),
    ] = None,
    chunk_range: Annotated[
        tuple[float, float] | None,
        typer.Option(
            metavar="LO HI",
            help="chunk sizes (tokens) over which α + β·C is the secant of τ_mix(·, B−1);"
            " default: the measured range. Use the chunks you will serve",
        ),
    ] = None,
    plot: Annotated[
        str | None, typer.Option(metavar="FILE", help="also draw the fit to this PNG")
    ] = None,
    solo_form: Annotated[
        Literal["auto", "affine", "hinge"],
        typer.Option(metavar="[auto|affine|hinge]", help="τ_solo form; auto picks by AICc"),
    ] = "auto",
    mix_form: Annotated[
        Literal["auto", "affine", "quadratic"],
        typer.Option(
            metavar="[auto|affine|quadratic]",
            help="τ_mix form (quadratic adds a C² term); auto picks by AICc",
        ),
    ] = "auto",
    keep_outliers: Annotated[
        bool,
        typer.Option(
            "--keep-outliers", help="keep points the Bonferroni outlier test would leave out"
        ),
    ] = False,
    model: Annotated[
        str | None, typer.Option(metavar="NAME", help="for multi-model input files")
    ] = None,
    hardware: Annotated[
        str | None, typer.Option(metavar="NAME", help="for Splitwise input files")
    ] = None,
    tp: Annotated[int | None, typer.Option(metavar="N", help="for multi-model input files")] = None,
    context: Annotated[
        int, typer.Option(min=1, metavar="TOKENS", help="for DistServe input files")
    ] = 1024,
) -> None:
    """Fit both curves, derive α, β, γ, print the tables, write the JSON (and plot)."""
    from rich.console import Console

    from fluidgate.calibration.csvformat import MeasurementError
    from fluidgate.calibration.fit import FitError, FitOptions, calibrate
    from fluidgate.calibration.importers import load_many
    from fluidgate.calibration.published import Selection
    from fluidgate.calibration.report import calibration_file, render
    from fluidgate.calibration.schema import dump_calibration

    options = FitOptions(max_batch, chunk_range, solo_form, mix_form, not keep_outliers)
    _check_target(out, files)
    if plot is not None:
        _check_target(plot, [*files, out])
    try:
        data = load_many(files, Selection(model, hardware, tp, context))
        result = calibrate(data, options)
    except (MeasurementError, FitError) as exc:
        _fail(str(exc))
    render(result, Console())
    calibration = calibration_file(result, data, files, options)
    _write(out, dump_calibration(calibration), inputs=files)
    _echo(
        f"wrote {out}: alpha={result.alpha:.6g} s, beta={result.beta:.6g} s/token,"
        f" gamma={result.gamma:.6g} /s"
    )
    if plot is not None:
        from fluidgate.calibration.plot import render_png

        _write(plot, render_png(result, title=", ".join(p.name for p in files)),
               inputs=[*files, out])
        _echo(f"wrote {plot}")


def _check_target(path: str, inputs: Sequence[Path | str] = ()) -> None:
    """Refuse an output before the work, not after a sweep or a fit."""
    from fluidgate.atomic import OutputError, check_output

    try:
        check_output(path, inputs=inputs)
    except OutputError as exc:
        _fail(str(exc))


def _write(path: str, data: str | bytes, inputs: Sequence[Path | str] = ()) -> None:
    """Write one output under `fluidgate.atomic`'s rules; a refusal is the user's input
    problem (exit 2), not a bug."""
    from fluidgate.atomic import OutputError, write_output

    try:
        write_output(path, data, inputs=inputs)
    except OutputError as exc:
        _fail(str(exc))


def _first_line(exc: BaseException) -> str:
    """One readable line, also for pydantic's multi-line validation reports."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(
            f"--{'-'.join(str(p) for p in err['loc']).replace('_', '-')}: {err['msg']}"
            for err in exc.errors()
        )
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
