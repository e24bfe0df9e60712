"""`fluidgate classes`: the steps behind the command, with the report it prints.

Kept apart from `cli.py` so the command line holds only option parsing and exit codes; every
failure here is an exception the command line turns into a message and a status.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fluidgate.planning.derive import Derivation, derive_classes, policy_text, table_text
from fluidgate.planning.traces import FORMAT_WORDS, Progress, TraceFormat, read_trace

REFERENCE_K = 64


@dataclass(frozen=True)
class ClassesRequest:
    trace: Path
    k: int
    out: str
    fmt: TraceFormat = TraceFormat.AUTO
    seed: int = 0
    gpus: int | None = None
    patience: float | None = None
    policy: Path | None = None
    reference_k: int = REFERENCE_K
    plot: str | None = None

    def command(self) -> str:
        """The options that decide the table, as a command line (file names without their
        directories), for the table's header comment."""
        words = ["fluidgate classes", Path(self.trace).name, f"--k {self.k}"]
        if self.fmt is not TraceFormat.AUTO:
            words.append(f"--format {self.fmt.value}")
        if self.seed:
            words.append(f"--seed {self.seed}")
        if self.gpus is not None:
            words.append(f"--gpus {self.gpus}")
        if self.patience is not None:
            words.append(f"--patience {self.patience:g}")
        words.append(f"--out {Path(self.out).name}")
        return " ".join(words)


@dataclass(frozen=True)
class Comparison:
    """R* per GPU of the K-class policy and of the reference grouping (None: no optimum)."""

    k_classes: int
    reference_classes: int
    reference_finest: bool
    r_k: float | None
    r_reference: float | None
    note: str = ""


def _rstar(template: str, template_path: Path, d: Derivation,
           gpus: int | None) -> tuple[float | None, str]:
    from fluidgate.pipeline import solve_policy
    from fluidgate.sli_dsl.loader import parse_policy

    policy = parse_policy(policy_text(template, d, gpus), str(template_path),
                          template_path.parent).policy
    sol = solve_policy(policy)
    if sol.optimal and sol.objective is not None:
        return sol.objective, ""
    return None, f"{sol.status.value}: {sol.message}"


def compare(req: ClassesRequest, d: Derivation, say: Callable[[str], None]) -> Comparison:
    """Solve the template with the K classes and with the reference grouping."""
    from fluidgate.reads import InputKind, read_text_input

    assert req.policy is not None
    template = read_text_input(req.policy, InputKind.POLICY)
    ref = d if len(d.classes) >= req.reference_k or d.finest else derive_classes(
        d.trace, req.reference_k, req.seed, req.patience)
    say(f"solving {req.policy} with {len(d.classes)} and with {len(ref.classes)} classes")
    r_k, note_k = _rstar(template, req.policy, d, req.gpus)
    r_ref, note_ref = (r_k, note_k) if ref is d else _rstar(template, req.policy, ref, req.gpus)
    note = "; ".join(n for n in (note_k, note_ref) if n)
    return Comparison(len(d.classes), len(ref.classes), ref.finest, r_k, r_ref, note)


def run_classes(req: ClassesRequest, progress: Progress | None = None,
                say: Callable[[str], None] = lambda _: None) -> list[str]:
    """Read, group, write the table (and plot); the report's lines."""
    from fluidgate.atomic import check_output, write_output

    inputs: list[str | os.PathLike[str]] = [req.trace]
    if req.policy is not None:
        inputs.append(req.policy)
    check_output(req.out, inputs=inputs)
    if req.plot is not None:
        check_output(req.plot, inputs=[*inputs, req.out])
    trace = read_trace(req.trace, req.fmt, progress)
    say(f"grouping {trace.requests:,} requests into {req.k} classes")
    d = derive_classes(trace, req.k, req.seed, req.patience)
    comparison = compare(req, d, say) if req.policy is not None else None
    name = Path(trace.file).name
    comments = [f"{len(d.classes)} classes derived by fluidgate from {name} "
                f"({trace.requests} requests over {trace.span:.6g} s)"]
    comments.append(f"command: {req.command()}")
    write_output(req.out, table_text(d, req.gpus, comments), inputs=inputs)
    if req.plot is not None:
        from fluidgate.planning.plot import render_png

        write_output(req.plot, render_png(d, f"{name}: {len(d.classes)} classes"),
                     inputs=[*inputs, req.out])
    return report_lines(req, d, comparison)


def report_lines(req: ClassesRequest, d: Derivation, c: Comparison | None) -> list[str]:
    t = d.trace
    n = t.requests
    unit = "/s per gpu" if req.gpus else "/s"
    scale = 1 / req.gpus if req.gpus else 1.0
    how = ("every distinct (prompt, output) pair is a class" if d.finest else
           f"k-means in log(prompt), log(output), seed {d.seed}")
    lines = [f"{Path(t.file).name}: {FORMAT_WORDS[t.format]}",
             f"  {n:,} requests over {t.span:,.1f} s: {n / t.span * scale:.6g} requests{unit}",
             f"{len(d.classes):,} classes ({how}), written to {req.out}",
             ""]
    shown = d.classes if len(d.classes) <= 32 else d.classes[:32]
    lines.append(f"  {'class':<8}{'share':>8}{'rate' + unit:>16}{'prompt':>10}{'output':>10}"
                 f"{'patience':>10}")
    for k in shown:
        patience = "none" if k.patience is None else f"{k.patience:.4g} s"
        lines.append(f"  {k.name:<8}{k.requests / n:>8.1%}{k.rate * scale:>16.5g}"
                     f"{k.prompt:>10.1f}{k.output:>10.1f}{patience:>10}")
    if len(shown) < len(d.classes):
        lines.append(f"  ... and {len(d.classes) - len(shown):,} more in the table")
    mean_p = sum(k.requests * k.prompt for k in d.classes) / n
    mean_o = sum(k.requests * k.output for k in d.classes) / n
    err_p, err_o = d.token_error()
    lines += ["",
              f"mean tokens: prompt {mean_p:,.1f} (trace {float(t.prompt.mean()):,.1f}), "
              f"output {mean_o:,.1f} (trace {float(t.output.mean()):,.1f})",
              f"token error, Σ|tokens - class mean| / Σ tokens: prompt {err_p:.1%}, "
              f"output {err_o:.1%}"]
    if c is not None:
        ref = (f"{c.reference_classes} classes"
               + (" (every distinct pair)" if c.reference_finest else ""))
        if c.r_k is not None and c.r_reference is not None:
            ratio = f" ({c.r_k / c.r_reference:.2%})" if c.r_reference else ""
            lines.append(f"R* per GPU with {c.k_classes} classes: {c.r_k:.6g}; with {ref}: "
                         f"{c.r_reference:.6g}{ratio}")
        else:
            lines.append(f"R* could not be compared ({c.note})")
    if req.plot is not None:
        lines.append(f"plot written to {req.plot}")
    return lines
