"""Every command the docs show with its output is run, and must print what the docs say.

A fenced ```text block whose first line starts with `$ ` is a transcript: each `$ fluidgate ...`
line is run (in a temporary directory holding a copy of `examples/` and the fixtures in
`tests/fixtures/docs/`) and its standard output and error must equal the lines under it.
`$ echo $?` must equal the previous command's exit status. An HTML comment on the line just
above a fence tunes it (see `Directive`): the width it was printed at, text that varies by
machine (timings), a policy shown in the docs that later transcripts use as a file, or a skip
with its reason. A line of the transcript that starts with `...` stands for any number of
lines, so a block may show an excerpt.

The commands run in this process through Click's test runner, so the whole file takes seconds,
not one interpreter start per command.
"""

from __future__ import annotations

import glob
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import ROOT, solvers_available

DOC_FILES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
FIXTURES = ROOT / "tests" / "fixtures" / "docs"
DEFAULT_COLUMNS = 100
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.M | re.S)
DIRECTIVE = re.compile(r"<!--\s*docs-test:(.*?)-->\s*\n$", re.S)
RUNNABLE = ("fluidgate", "echo $?")


@dataclass
class Directive:
    """What the comment above a block says: `columns=N`, `vary=REGEX` (repeatable), `file=NAME`
    (the block is that file's text, used by later transcripts of the same page),
    `needs=gurobi`, `skip=REASON`."""

    columns: int = DEFAULT_COLUMNS
    vary: list[str] = field(default_factory=list)
    file: str | None = None
    needs: str | None = None
    skip: str | None = None

    @classmethod
    def parse(cls, text: str) -> Directive:
        d = cls()
        for word in shlex.split(text):
            key, _, value = word.partition("=")
            if key == "columns":
                d.columns = int(value)
            elif key == "vary":
                d.vary.append(value)
            elif key in ("file", "needs", "skip"):
                setattr(d, key, value)
            else:
                raise ValueError(f"unknown docs-test directive {key!r}")
        return d


@dataclass
class Block:
    doc: Path
    line: int
    text: str
    directive: Directive

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    @property
    def is_transcript(self) -> bool:
        """A block of `$ command` lines with output; a block that only lists commands of
        other programs (`$ make bench`) shows no output, so there is nothing to compare."""
        if not self.text.startswith("$ "):
            return False
        lines = self.text.splitlines()
        return any(not line.startswith("$ ") for line in lines) or any(
            line[2:].strip().startswith(RUNNABLE) for line in lines)


def blocks(doc: Path) -> list[Block]:
    text = doc.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        before = text[: m.start()]
        d = DIRECTIVE.search(before[-600:])
        directive = Directive.parse(d.group(1)) if d else Directive()
        out.append(Block(doc, before.count("\n") + 1, m.group(2), directive))
    return out


ALL_BLOCKS = [b for doc in DOC_FILES for b in blocks(doc)]
TRANSCRIPTS = [b for b in ALL_BLOCKS if b.is_transcript]


def _matches(expected: list[str], actual: list[str]) -> bool:
    """Line-by-line equality where an expected line starting with '...' matches any run of
    lines (dynamic programming over the two lists, so no backtracking blow-up)."""
    n, m = len(expected), len(actual)
    ok = [[False] * (m + 1) for _ in range(n + 1)]
    ok[n][m] = True
    for i in range(n - 1, -1, -1):
        wild = expected[i].lstrip().startswith("...")
        for j in range(m, -1, -1):
            if wild:
                ok[i][j] = ok[i + 1][j] or (j < m and ok[i][j + 1])
            else:
                ok[i][j] = j < m and expected[i] == actual[j] and ok[i + 1][j + 1]
    return ok[0][0]


def _normalise(lines: list[str], vary: list[str]) -> list[str]:
    """Trailing blanks never matter; a line holding machine-dependent text has it replaced and
    its runs of spaces collapsed (a longer timing shifts the panel border)."""
    out = []
    for line in lines:
        line = line.rstrip()
        changed = line
        for pattern in vary:
            changed = re.sub(pattern, "<varies>", changed)
        if changed != line:
            changed = re.sub(r" +", " ", changed)
        out.append(changed)
    while out and not out[-1]:
        out.pop()
    return out


def _commands(text: str) -> list[tuple[str, list[str]]]:
    steps: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            steps[-1][1].append(line)
    return steps


def _argv(command: str, cwd: Path) -> list[str]:
    words = shlex.split(command, comments=True)
    assert words[0] == "fluidgate", command
    argv: list[str] = []
    for w in words[1:]:
        if any(c in w for c in "*?["):
            found = sorted(glob.glob(w, root_dir=cwd))
            argv.extend(found or [w])
        else:
            argv.append(w)
    return argv


def _app():  # type: ignore[no-untyped-def]
    from fluidgate import cli

    if not any(g.name == "calibrate" for g in cli.app.registered_groups):
        cli._mount_calibration()
    cli.mount_simulator()
    cli.mount_harness()
    cli.mount_planning()
    return cli.app


def _workdir(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    data = Path("fluidgate", "calibration", "data")  # examples/calibrated.sli reads from it
    shutil.copytree(ROOT / data, tmp_path / data)
    if FIXTURES.is_dir():
        for f in FIXTURES.iterdir():
            shutil.copy(f, tmp_path / f.name)
    for other in ALL_BLOCKS:  # a policy shown on one page may be run on another
        if other.directive.file:
            (tmp_path / other.directive.file).write_text(other.text, encoding="utf-8")


@pytest.mark.parametrize("block", TRANSCRIPTS, ids=[b.id for b in TRANSCRIPTS])
def test_transcript_prints_what_the_docs_show(
    block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = block.directive
    if d.skip:
        pytest.skip(d.skip)
    if d.needs and d.needs not in solvers_available():
        pytest.skip(f"needs the {d.needs} solver, which is not available here")
    _workdir(tmp_path)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    app = _app()
    last_rc = 0
    for command, expected in _commands(block.text):
        if command.strip() == "echo $?":
            actual = [str(last_rc)]
        else:
            res = runner.invoke(app, _argv(command, tmp_path), prog_name="fluidgate",
                                env={"COLUMNS": str(d.columns), "NO_COLOR": "1"})
            if res.exception and not isinstance(res.exception, SystemExit):
                raise res.exception
            last_rc = res.exit_code
            actual = res.output.splitlines()
        want, got = _normalise(expected, d.vary), _normalise(actual, d.vary)
        if not _matches(want, got):
            import difflib

            diff = "\n".join(difflib.unified_diff(want, got, "docs", "actual", lineterm=""))
            pytest.fail(f"{block.id}: `$ {command}` printed something else:\n{diff}")


def test_every_transcript_runs_or_says_why_not() -> None:
    """A transcript of something the suite cannot run (pip, make, a benchmark) must carry a
    skip with its reason, so no command block silently goes untested."""
    for block in TRANSCRIPTS:
        if block.directive.skip:
            continue
        for command, _ in _commands(block.text):
            assert command.strip().startswith(RUNNABLE), (
                f"{block.id}: `$ {command}` cannot be run by the suite; mark the block "
                "with <!-- docs-test: skip='why' -->"
            )


def test_matcher_rejects_a_changed_line_and_honours_ellipsis() -> None:
    assert _matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert _matches(["a", "...", "b"], ["a", "b"])
    assert not _matches(["a", "...", "d"], ["a", "b", "c", "e"])
    assert not _matches(["a", "b"], ["a", "b", "c"])
    timing = [r"(?<=·  )\d+ ms"]
    assert _normalise(["│ p  ·  380 ms     │"], timing) == _normalise(["│ p  ·  1003 ms    │"],
                                                                    timing)
    assert _normalise(["R* 297.7 ms"], timing) != _normalise(["R* 297.8 ms"], timing)


OUTSIDE = re.compile(r"DESIGN\.md|SLI-LANGUAGE\.md|SOLVER-NOTES\.md|STYLE-NOTES\.md|"
                     r"\.\./shared|shared/data|/work/")


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_reference_nothing_outside_the_repository(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    bad = [f"{doc.name}:{n}: {line.strip()}" for n, line in enumerate(text.splitlines(), 1)
           if OUTSIDE.search(line)]
    assert not bad, "\n".join(bad)
    for target in re.findall(r"\]\(([^)#\s]+)", text):  # relative links resolve in the repo
        if "://" not in target:
            assert (doc.parent / target).resolve().is_relative_to(ROOT), target
            assert (doc.parent / target).exists(), target
