"""What the operator reads: nothing cut at 60, 80 or 120 columns, large policies summarised,
counted nouns, JSON without negative zeros, help that names things and lists every exit code."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fluidgate.cli import Method, SolverName, app
from fluidgate.tablefit import Column, Sheet, column_groups, fit
from fluidgate.wording import plural
from tests.conftest import EXAMPLES, REFERENCE

RUN = CliRunner()

#: The labels of examples/two_class_slo.sli's slo block as the operator wrote them (`all`
#: expanded per class), typed here rather than taken from the code.
SLO_LABELS = ["tpot <= 23 ms", "abandonment(decode_heavy) <= 20 %",
              "abandonment(prefill_heavy) <= 20 %", "ttft(decode_heavy) <= 2 s",
              "soft spread(decode) <= 0.5 penalty 10"]


def solve(path: Path | str, columns: int, *extra: str) -> str:
    res = RUN.invoke(app, ["solve", str(path), *extra], env={"COLUMNS": str(columns)})
    assert res.exit_code == 0, res.output
    return res.output


def class_names(path: Path) -> list[str]:
    return re.findall(r"^class\s+(\w+)", path.read_text(encoding="utf-8"), re.M)


@pytest.mark.parametrize("columns", [60, 80, 120])
@pytest.mark.parametrize("example", ["two_class_slo.sli", "dolly8.sli"])
def test_every_class_and_label_whole_and_nothing_cut(example: str, columns: int) -> None:
    out = solve(EXAMPLES / example, columns)
    assert "…" not in out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= columns
    for name in class_names(EXAMPLES / example):
        # whole on one line, as a cell of its own (not a fragment of a folded cell)
        assert any(re.search(rf"(^|[│ ]){name}([│ ]|$)", line) for line in lines), name
    if example == "two_class_slo.sli":
        for label in SLO_LABELS:
            assert any(label in line for line in lines), label
    for header in ("prefilling", "decode mixed", "wait prefill", "shadow price"):
        if header != "shadow price" or example == "two_class_slo.sli":
            assert header in out


def test_120_columns_keeps_one_table_per_section() -> None:
    out = solve(EXAMPLES / "two_class_slo.sli", 120)
    assert re.search(r"┃ class +┃ prefilling ┃ decode mixed ┃ decode solo ┃ wait prefill ┃ "
                     r"wait decode ┃ to solo ┃", out)
    assert re.search(r"┃ line ┃ constraint +┃ achieved ┃ +bound ┃ binds ┃ +shadow price ┃ "
                     r"violation ┃", out)
    assert out.count("┏") == 3  # three tables, none split


def test_80_columns_splits_columns_and_repeats_the_class() -> None:
    out = solve(EXAMPLES / "two_class_slo.sli", 80)
    assert out.count("┃ class ") == 4  # each of the two per-class tables in two parts
    assert out.count("┃ line ┃ constraint") == 2


def test_narrow_terminal_gives_one_block_per_record() -> None:
    out = solve(EXAMPLES / "two_class_slo.sli", 44)
    assert "…" not in out
    assert "38  tpot <= 23 ms" in out
    assert "shadow price: 2.526e+07 per ms" in out
    assert "violation: 3.313" in out


def test_column_groups_are_consecutive_even_and_fit() -> None:
    # keys 10 wide: a table of them alone is 10 + 3 + 1 = 14; each value column adds w + 3
    assert column_groups([10], [5, 5, 5, 5], 14 + 4 * 8) == [[0, 1, 2, 3]]
    assert column_groups([10], [5, 5, 5, 5], 14 + 3 * 8) == [[0, 1], [2, 3]]
    assert column_groups([10], [5, 5, 20], 14 + 23) == [[0, 1], [2]]
    assert column_groups([10], [5, 30], 14 + 32) is None


def test_records_wrap_between_pairs_only() -> None:
    sheet = Sheet("t", [Column("k")], [Column("alpha"), Column("beta"), Column("gamma")],
                  [(["row"], ["1.0 ms", "", "3"])])
    parts = fit(sheet, 12)  # keys alone with the widest column need 7 + 9 = 16
    text = [str(p) for p in parts]
    assert text == ["t", "row", "  alpha: 1.0 ms", "  gamma: 3"]


def many_classes(k: int, gpus: int = 10) -> str:
    """k classes, class i arriving at i/1000 per GPU: the busiest are the last ones."""
    head = REFERENCE.split("class decode_heavy")[0].replace("gpus      = 500", f"gpus = {gpus}")
    body = "".join(
        f"class c{i:03d} {{ rate = {i / 1000} /s per gpu; prompt = 300 tokens; "
        f"output = 100 tokens; patience = 10 s }}\n" for i in range(1, k + 1))
    return head + body + "objective maximize revenue\n"


def test_many_classes_show_the_busiest_and_a_total(tmp_path: Path) -> None:
    p = tmp_path / "many.sli"
    p.write_text(many_classes(60), encoding="utf-8")
    out = solve(p, 120)
    shown = set(re.findall(r"│ (c\d{3}) ", out))
    assert shown == {f"c{i:03d}" for i in range(36, 61)}
    # hidden: classes 1..35 at i/1000 per GPU on 10 GPUs: 10 · 0.001 · (35·36/2) = 6.3 /s
    assert "and 35 more classes: 6.3 arrive/s," in out
    full = solve(p, 120, "--all-classes")
    assert set(re.findall(r"│ (c\d{3}) ", full)) == {f"c{i:03d}" for i in range(1, 61)}
    assert "more classes" not in full


def test_counted_nouns() -> None:
    assert [plural(1, "GPU"), plural(2, "GPU"), plural(1, "class"), plural(3, "class"),
            plural(20_000, "class"), plural(0, "SLO constraint")] == [
        "1 GPU", "2 GPUs", "1 class", "3 classes", "20,000 classes", "0 SLO constraints"]


def test_one_gpu_is_singular(tmp_path: Path) -> None:
    p = tmp_path / "one.sli"
    p.write_text(REFERENCE.replace("gpus      = 500", "gpus = 1")
                 .replace("0.5 /s per gpu", "0.01 /s per gpu"), encoding="utf-8")
    out = solve(p, 120)
    assert "of 1 GPU (" in out and "1 GPUs" not in out
    res = RUN.invoke(app, ["check", str(p)])
    assert res.output.strip().endswith(": ok — 2 classes, 0 SLO constraints")


def test_check_line_is_not_wrapped_when_piped(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 70)
    deep.mkdir()
    p = deep / "policy.sli"
    p.write_text(REFERENCE, encoding="utf-8")
    res = RUN.invoke(app, ["check", str(p)], env={"COLUMNS": "80"})
    assert f"{p}: ok — 2 classes, 0 SLO constraints\n" in res.output


def test_json_has_no_negative_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    from fluidgate import document, pipeline
    from fluidgate.sli_dsl.loader import load_policy

    sol = pipeline.solve_policy(load_policy(EXAMPLES / "two_class.sli").policy, "highs")
    first = dataclasses.replace(sol.classes[0], y_m=-0.0, q_d=-0.0)
    sol = dataclasses.replace(sol, classes=(first, *sol.classes[1:]), penalty=-0.0)
    text = json.dumps(document.solution_document(sol))
    assert "-0.0" not in text
    doc = json.loads(text)
    assert doc["classes"]["decode_heavy"]["y_m"] == 0.0 and doc["penalty"] == 0.0


def test_policy_name_with_control_characters_is_escaped_in_the_table(tmp_path: Path) -> None:
    p = tmp_path / "esc.sli"
    p.write_text(REFERENCE.replace('policy "two-class reference"', 'policy "a\x1b[2Jb"'),
                 encoding="utf-8")
    out = solve(p, 120)
    assert "\x1b" not in out and "a\\x1b[2Jb" in out


COMMANDS = [["check"], ["solve"], ["explain"], ["calibrate", "measure"],
            ["calibrate", "import"], ["calibrate", "fit"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_names_things_and_lists_every_exit_code(command: list[str]) -> None:
    from fluidgate.cli import _mount_calibration

    if not any(g.name == "calibrate" for g in app.registered_groups):
        _mount_calibration()
    res = RUN.invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    for python_type in ("<bool>", "<str>", "<int", "<float>", "<path>", "<list[", "<tuple"):
        assert python_type not in res.output, python_type
    assert max(len(line) for line in res.output.splitlines()) <= 80
    codes = {"solve": "01234"}.get(command[0], "012")
    epilog = res.output.split("Exit status:")[1]
    assert re.findall(r"^\s+(\d)  ", epilog, re.M) == list(codes)


def test_choices_are_the_registered_solvers_and_methods() -> None:
    from fluidgate.solvers.registry import SOLVER_NAMES

    assert [s.value for s in SolverName] == list(SOLVER_NAMES)
    assert [m.value for m in Method] == ["auto", "simplex", "ipm"]
    res = RUN.invoke(app, ["solve", str(EXAMPLES / "two_class.sli"), "--method", "magic"])
    assert res.exit_code == 2 and "'magic' is not one of 'auto', 'simplex', 'ipm'" in res.output


def test_report_length_does_not_grow_with_the_number_of_classes() -> None:
    """The cost of drawing follows the rows shown: 300 and 3,000 classes (each with an SLO row)
    print the same number of lines."""
    from rich.console import Console

    from bench.render import synthetic
    from fluidgate.report import render_solution

    def lines(k: int) -> list[str]:
        import io

        buf = io.StringIO()
        render_solution(synthetic(k), Console(file=buf, width=120))
        return buf.getvalue().splitlines()

    small, large = lines(300), lines(3000)
    assert len(small) == len(large) < 120
    assert any(line.startswith("and 2,975 more classes: ") for line in large)
    assert any(line.startswith("and 2,975 more service-level rows") for line in large)


def test_row_selection_equals_the_sorted_definition() -> None:
    """The report picks its rows in one pass (numpy for the classes); the picks are those of
    a full sort: the busiest classes (the first of equal ones), the binding and violated
    service-level rows first (in policy order), for random rows with many ties."""
    import random

    from fluidgate.report import SHOWN_ROWS, shown_classes, shown_slo_rows
    from fluidgate.solution import ClassSolution, SloOutcome, Solution
    from fluidgate.solvers.base import TerminationStatus

    rng = random.Random(7)
    for k in (SHOWN_ROWS + 1, 60, 400):
        base = ClassSolution("c", *([0.0] * 18))
        classes = tuple(dataclasses.replace(base, name=f"c{i}",
                                            arrivals=float(rng.randint(0, 9)))
                        for i in range(k))
        sol = Solution(policy=None, solver="highs",  # type: ignore[arg-type]
                       status=TerminationStatus.OPTIMAL, message="", classes=classes)
        busiest = sorted(range(k), key=lambda i: (-classes[i].arrivals, i))[:SHOWN_ROWS]
        assert list(shown_classes(sol, False)) == [classes[i] for i in sorted(busiest)]
        for share in (0.0, 0.05, 0.5):
            slos = [SloOutcome(f"s{i}", None, False, None, None, "<=", None,
                               rng.random() < share, None,
                               violation=0.1 if rng.random() < share / 3 else None)
                    for i in range(k)]
            flagged = [i for i, o in enumerate(slos) if o.binding or o.violation]
            order = sorted(range(k), key=lambda i: (not (slos[i].binding or slos[i].violation),
                                                    i))
            assert shown_slo_rows(slos) == (sorted(order[:SHOWN_ROWS]), len(flagged))
