"""`classes from "table.csv"`: the same LP as inline classes, the same checks, positioned
errors into the table, names unique across tables and blocks."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fluidgate.cli import app
from fluidgate.diagnostics import PolicyError
from fluidgate.pipeline import solve_policy
from fluidgate.sli_dsl.loader import load_policy

HEAD = """policy "table"
cluster {
    gpus = 40
    max_batch = 16
    chunk = 256 tokens
    iteration { mixed = 17.4 ms + 0.062 ms/token * chunk; solo = 22 ms }
}
pricing bundled { input = 0.1 per Mtok; output = 0.3 per Mtok }
"""
SLO = "slo {\n    tpot <= 26 ms\n    abandonment(c1) <= 40 %\n}\n"


def _random_rows(n: int, seed: int) -> list[dict[str, str]]:
    """Cells as text, in the units of the table's header; some patience and prices empty."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        rows.append({
            "name": f"c{i}",
            "rate": f"{rng.uniform(0.01, 3):.6g}",
            "prompt": f"{rng.randint(20, 4000)}",
            "output": f"{rng.randint(10, 1500)}",
            "patience": "" if i % 3 == 0 else f"{rng.uniform(1, 60):.4g}",
            "price_input": "" if i % 4 else f"{rng.uniform(0.05, 2):.4g}",
            "price_output": "" if i % 5 else f"{rng.uniform(0.1, 4):.4g}",
        })
    return rows


def _table(rows: list[dict[str, str]]) -> str:
    lines = ["# generated for the test",
             "name,rate[/s],prompt[tokens],output,patience[s],price_input[per Mtok],"
             "price_output[per Mtok]"]
    lines += [",".join(r.values()) for r in rows]
    return "\n".join(lines) + "\n"


def _inline(rows: list[dict[str, str]]) -> str:
    out = []
    for r in rows:
        price = []
        if r["price_input"]:
            price.append(f"input = {r['price_input']} per Mtok")
        if r["price_output"]:
            price.append(f"output = {r['price_output']} per Mtok")
        out.append(
            f"class {r['name']} {{\n    rate = {r['rate']} /s\n    prompt = {r['prompt']} tokens\n"
            f"    output = {r['output']} tokens\n"
            f"    patience = {r['patience'] + ' s' if r['patience'] else 'none'}\n"
            + (f"    price {{ {'; '.join(price)} }}\n" if price else "") + "}\n")
    return "".join(out)


def test_table_solves_to_exactly_the_inline_lp(tmp_path: Path) -> None:
    rows = _random_rows(60, seed=7)
    (tmp_path / "classes.csv").write_text(_table(rows))
    table = tmp_path / "table.sli"
    table.write_text(HEAD + 'classes from "classes.csv"\n' + SLO)
    inline = tmp_path / "inline.sli"
    inline.write_text(HEAD + _inline(rows) + SLO)
    p_table, p_inline = load_policy(table).policy, load_policy(inline).policy
    assert p_table.classes == p_inline.classes  # every number bit for bit
    s_table, s_inline = solve_policy(p_table), solve_policy(p_inline)
    assert s_table.optimal and s_inline.optimal
    assert s_table.objective == s_inline.objective
    assert s_table.plan == s_inline.plan
    assert [c.x for c in s_table.classes] == [c.x for c in s_inline.classes]
    assert [c.y_s for c in s_table.classes] == [c.y_s for c in s_inline.classes]


def test_per_gpu_rates_and_per_request_prices_match_inline(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(
        "name,rate[/s per gpu],prompt,output,price_output[per request],weight\n"
        "a,0.5,300,1000,0.002,2\nb,0.25,3000,400,,\n")
    (tmp_path / "t.sli").write_text(HEAD + 'classes from "t.csv"\n')
    (tmp_path / "i.sli").write_text(
        HEAD + "class a { rate = 0.5 /s per gpu; prompt = 300 tokens; output = 1000 tokens\n"
        "price { output = 0.002 per request }; weight = 2 }\n"
        "class b { rate = 0.25 /s per gpu; prompt = 3000 tokens; output = 400 tokens }\n")
    a = load_policy(tmp_path / "t.sli").policy.classes
    b = load_policy(tmp_path / "i.sli").policy.classes
    assert a == b
    assert a[0].price_output == pytest.approx(0.002 / 1000)  # per request over 1000 tokens
    assert a[1].price_output == pytest.approx(0.3e-6)  # the pricing block's


def _errors(tmp_path: Path, table: str, extra: str = "") -> str:
    (tmp_path / "t.csv").write_text(table)
    (tmp_path / "t.sli").write_text(HEAD + 'classes from "t.csv"\n' + extra)
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "t.sli")
    return info.value.render()


def test_bad_cells_are_reported_as_file_row_column(tmp_path: Path) -> None:
    text = _errors(tmp_path, "# note\nname,rate[/s],prompt,output\n"
                             "a,1,300,1000\nb,abc,300,1000\nc,1,300,0\n")
    f = tmp_path / "t.csv"
    assert f"{f}:4:3: error: 'rate' must be a number, not 'abc'" in text
    assert f"{f}:5:9: error: 'output' of class 'c' must be positive, got 0" in text
    assert "    b,abc,300,1000\n      ^^^" in text  # the table's own line, with carets


def test_table_cells_get_the_inline_range_checks(tmp_path: Path) -> None:
    # each value is just outside a PLAUSIBLE range of fields.py (patience 1 ms .. 1e9 s,
    # prompt at most 1e8 tokens, rate at most 1e7 /s per GPU = 4e8 /s on 40 GPUs)
    text = _errors(tmp_path, "name,rate[/s],prompt,output,patience[ms]\n"
                             "a,1,300,100,0.5\nb,1,2e8,100,\nc,5e8,1,1,\n")
    assert "'patience' of class 'a' = 0.5 (0.0005 s) is outside the range" in text
    assert "'prompt' of class 'b' = 2e+08 tokens is outside the range" in text
    assert "'rate' of class 'c' = 5e8 (1.25e+07 requests/s per GPU) is outside" in text
    (tmp_path / "i.sli").write_text(
        HEAD + "class a { rate = 1 /s; prompt = 300 tokens; output = 100 tokens; "
        "patience = 0.5 ms }\n")
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "i.sli")
    assert "is outside the range fluidgate can solve reliably (0.001 to 1e+09 s)" in str(
        info.value)
    assert "(0.001 to 1e+09 s)" in text  # the same range, from the one definition


def test_header_errors(tmp_path: Path) -> None:
    text = _errors(tmp_path, "name,rate,prompt,output,patiense\na,1,2,3,4\n")
    assert "column 'rate' needs its unit in the heading" in text
    assert "unknown column 'patiense' (did you mean 'patience'?)" in text
    text = _errors(tmp_path, "name,rate[tokens],prompt,output\na,1,2,3\n")
    assert "column 'rate' must be a rate (requests per time), not a token count" in text
    text = _errors(tmp_path, "name,rate[/s per gpu],prompt\na,1,2\n")
    assert "needs a 'output' column" in text


def test_names_are_unique_across_tables_and_blocks(tmp_path: Path) -> None:
    text = _errors(tmp_path, "name,rate[/s],prompt,output\nx,1,2,3\ny,1,2,3\n",
                   "class x { rate = 1 /s; prompt = 1 tokens; output = 1 tokens }\n")
    f = tmp_path / "t.csv"
    assert f"t.sli:10:7: error: class 'x' is defined twice (first on {f}:2:1)" in text


def test_slos_name_table_classes_and_mix_with_blocks(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("name,rate[/s],prompt,output\nx,10,300,100\n")
    (tmp_path / "t.sli").write_text(
        HEAD + "class y { rate = 5 /s; prompt = 100 tokens; output = 50 tokens }\n"
        'classes from "t.csv"\nslo { ttft(x) <= 1 s }\n')
    pol = load_policy(tmp_path / "t.sli").policy
    assert pol.class_names == ("y", "x")  # in the order the file gives them
    assert pol.classes[1].rate == 10 / 40
    assert pol.class_tables == (str(tmp_path / "t.csv"),)


def test_missing_table_is_positioned_at_its_path(tmp_path: Path) -> None:
    (tmp_path / "t.sli").write_text(HEAD + 'classes from "nope.csv"\n')
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "t.sli")
    assert "t.sli:9:14: error: class table" in str(info.value)
    assert "does not exist" in str(info.value)


def test_solve_refuses_to_write_over_the_table(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("name,rate[/s],prompt,output\nx,10,300,100\n")
    before = (tmp_path / "t.csv").read_text()
    (tmp_path / "t.sli").write_text(HEAD + 'classes from "t.csv"\n')
    result = CliRunner().invoke(app, ["solve", str(tmp_path / "t.sli"), "--json",
                                      str(tmp_path / "t.csv")])
    assert result.exit_code == 2
    assert (tmp_path / "t.csv").read_text() == before


def test_a_name_twice_in_one_table_and_a_short_row(tmp_path: Path) -> None:
    text = _errors(tmp_path, "name,rate[/s],prompt,output\nx,1,2,3\nx,1,2,3\n")
    assert f"{tmp_path / 't.csv'}:3:1: error: class 'x' is defined twice (first on " \
        f"{tmp_path / 't.csv'}:2:1)" in text
    text = _errors(tmp_path, "name,rate[/s],prompt,output\nx,1,2\n")
    assert ":2:1: error: this row has 3 cells, the header 4" in text


def test_bad_cell_exits_2_from_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("\ufeffname,rate[/s],prompt,output\nx,1,2,nan\n")
    (tmp_path / "t.sli").write_text(HEAD + 'classes from "t.csv"\n')
    result = CliRunner().invoke(app, ["solve", str(tmp_path / "t.sli")])
    assert result.exit_code == 2
    assert "t.csv:2:7: error: 'output' must be a finite number, not 'nan'" in result.output
