"""`fluidgate export`: check the request, read a spec, run one exporter, print the files or
write a directory (a policy is solved into a spec by the CLI first).

Kept out of `cli.py` so the command's rules (bounded read, exit-2 errors that name the
field, never a partial directory, the unmet list always shown) are testable without a
terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fluidgate.controllers.export.base import ExportError, ExportResult, Target
from fluidgate.controllers.export.registry import export_spec, parse_target, target_names
from fluidgate.controllers.spec import ControllerSpec, SpecError


class ExportInputError(Exception):
    """Bad input to `fluidgate export` (exit 2); the message says what and where."""


@dataclass(frozen=True)
class ExportOutcome:
    stdout: str  # the files, when printed
    stderr: str  # what was written and what the stack cannot express


def read_spec(path: Path) -> ControllerSpec:
    """The spec at `path`, read and validated by the one spec loader (`load_spec`)."""
    from fluidgate.controllers.spec import load_spec

    try:
        return load_spec(path)
    except SpecError as exc:
        raise ExportInputError(str(exc)) from None


def render_stdout(result: ExportResult) -> str:
    """One file prints as itself (so `> file` works); several get `==> name <==` headers."""
    if len(result.files) == 1:
        return next(iter(result.files.values()))
    return "\n".join(f"==> {name} <==\n{text}" for name, text in result.files.items())


def unmet_summary(result: ExportResult) -> str:
    if not result.unmet:
        return ""
    lines = [f"{len(result.unmet)} rule(s) of the plan that {result.stack} cannot express "
             "(details in README.txt):"]
    lines += [f"  - {u.rule.split(':')[0]}" for u in result.unmet]
    return "\n".join(lines) + "\n"


def check_request(target_name: str, out: Path | None, force: bool,
                  inputs: Sequence[Path]) -> Target:
    """The target, once the name and the output directory are known to be usable: checked
    before any solve or export work, as every fluidgate output is."""
    from fluidgate.atomic import OutputError
    from fluidgate.controllers.export.outdir import check_directory

    target = parse_target(target_name)
    if target is None:
        raise ExportInputError(f"unknown target '{target_name}'; choose one of "
                               f"{', '.join(target_names())}")
    if out is not None:
        try:
            check_directory(out, force, inputs)
        except OutputError as exc:
            raise ExportInputError(str(exc)) from None
    return target


def deliver(spec: ControllerSpec, target: Target, out: Path | None, force: bool,
            inputs: Sequence[Path], origin: str) -> ExportOutcome:
    """Run the exporter; print its files (`out` None) or write them as one directory."""
    from fluidgate.atomic import OutputError
    from fluidgate.controllers.export.outdir import write_files

    try:
        result = export_spec(spec, target)
    except ExportError as exc:
        raise ExportInputError(f"{origin}: cannot export for {target.value}: {exc}") from None
    if out is None:
        return ExportOutcome(render_stdout(result), unmet_summary(result))
    try:
        written = write_files(out, result.files, force, inputs)
    except OutputError as exc:
        raise ExportInputError(str(exc)) from None
    except OSError as exc:
        raise ExportInputError(f"cannot write '{out}': {exc.strerror or exc}") from None
    said = f"wrote {out}/ for {result.stack}: {', '.join(p.name for p in written)}\n"
    return ExportOutcome("", said + unmet_summary(result))
