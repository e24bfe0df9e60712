"""`fluidgate classes`: traces → class tables, checked against values computed here from the
trace files with the csv/json modules, and against small traces worked by hand."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fluidgate.cli import app
from fluidgate.pipeline import solve_policy
from fluidgate.sli_dsl.loader import load_policy
from tests.conftest import ROOT, SHARED

DATA = SHARED / "data"
AZURE_CONV = DATA / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv"
MOONCAKE = DATA / "mooncake_fast25" / "conversation_trace.jsonl"
needs_azure = pytest.mark.skipif(not AZURE_CONV.is_file(),
                                 reason=f"the Azure trace is not at {AZURE_CONV}")
needs_mooncake = pytest.mark.skipif(not MOONCAKE.is_file(),
                                    reason=f"the Mooncake trace is not at {MOONCAKE}")

TEMPLATE = """cluster {
    gpus = 4
    max_batch = 16
    chunk = 256 tokens
    iteration { mixed = 17.4 ms + 0.062 ms/token * chunk; solo = 22 ms }
}
pricing bundled { input = 0.5 per Mtok; output = 1.5 per Mtok }
"""


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["classes", *args])
    return result.exit_code, result.output


def _table(path: Path) -> list[dict[str, str]]:
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    return list(csv.DictReader(lines))


def _seconds(stamp: str) -> Decimal:
    """'2023-11-16 18:15:46.6805900' → seconds since midnight, exactly."""
    clock = stamp.split(" ")[1]
    h, m, s = clock.split(":")
    assert stamp.startswith("2023-11-16 ")  # the trace is one hour of one day
    return Decimal(h) * 3600 + Decimal(m) * 60 + Decimal(s)


def _azure_truth(path: Path) -> tuple[int, float, float, float]:
    """Requests, arrival rate over the span, mean prompt and mean output tokens."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    times = [_seconds(r["TIMESTAMP"]) for r in rows]
    span = max(times) - min(times)
    n = len(rows)
    prompt = sum(int(r["ContextTokens"]) for r in rows) / n
    output = sum(int(r["GeneratedTokens"]) for r in rows) / n
    return n, float(Decimal(n) / span), prompt, output


@needs_azure
def test_azure_conversation_with_8_classes_keeps_means_and_total_rate(tmp_path: Path) -> None:
    out = tmp_path / "c.csv"
    code, text = _run(str(AZURE_CONV), "--k", "8", "--out", str(out))
    assert code == 0, text
    n, rate, prompt, output = _azure_truth(AZURE_CONV)
    rows = _table(out)
    assert len(rows) == 8
    rates = [float(r["rate[/s]"]) for r in rows]
    assert sum(rates) == pytest.approx(rate, rel=1e-12, abs=0)
    mean_p = sum(q * float(r["prompt[tokens]"]) for q, r in zip(rates, rows, strict=True))
    mean_o = sum(q * float(r["output[tokens]"]) for q, r in zip(rates, rows, strict=True))
    assert mean_p / sum(rates) == pytest.approx(prompt, rel=0.02)
    assert mean_o / sum(rates) == pytest.approx(output, rel=0.02)
    # group means, not centroids: the totals hold far better than the 2 % asked for
    assert mean_p / sum(rates) == pytest.approx(prompt, rel=1e-9)
    assert f"{n:,} requests" in text


@needs_azure
def test_bundled_example_is_what_its_command_derives(tmp_path: Path) -> None:
    example = ROOT / "examples" / "azure_conv_classes.csv"
    command = next(ln for ln in example.read_text().splitlines()
                   if ln.startswith("# command: fluidgate classes "))
    args = command.removeprefix("# command: fluidgate classes ").split()
    assert args[0] == AZURE_CONV.name
    out = tmp_path / "again.csv"
    args[args.index("--out") + 1] = str(out)
    code, text = _run(str(AZURE_CONV), *args[1:])
    assert code == 0, text
    assert _table(out) == _table(example)
    sli = (ROOT / "examples" / "azure_conv.sli").read_text()
    assert "fluidgate classes AzureLLMInferenceTrace_conv.csv --k 8 --patience 60" in sli
    policy = load_policy(ROOT / "examples" / "azure_conv.sli").policy
    _, rate, _, _ = _azure_truth(AZURE_CONV)
    assert sum(c.rate for c in policy.classes) * policy.cluster.gpus == pytest.approx(
        rate, rel=1e-12)
    assert solve_policy(policy).optimal


def test_attribution_travels_with_the_example() -> None:
    text = (ROOT / "examples" / "azure_conv_classes.csv").read_text()
    assert "CC-BY-4.0" in text and "Splitwise" in text


def _plain(tmp_path: Path) -> Path:
    # two obvious groups: short chats (100, 50) and long documents (8000, 400 / 600);
    # arrivals from 0 to 10 s
    p = tmp_path / "trace.csv"
    p.write_text("arrival,prompt,output,patience\n"
                 "0,100,50,10\n2.5,100,50,20\n5,8000,400,60\n10,8000,600,60\n")
    return p


def test_plain_trace_by_hand(tmp_path: Path) -> None:
    out = tmp_path / "c.csv"
    code, text = _run(str(_plain(tmp_path)), "--k", "2", "--out", str(out))
    assert code == 0, text
    rows = _table(out)
    assert [r["name"] for r in rows] == ["c1", "c2"]
    assert [float(r["rate[/s]"]) for r in rows] == [0.2, 0.2]  # 2 requests over 10 s each
    assert [float(r["prompt[tokens]"]) for r in rows] == [100, 8000]
    assert [float(r["output[tokens]"]) for r in rows] == [50, 500]
    assert [float(r["patience[s]"]) for r in rows] == [15, 60]  # the column's group means
    assert "token error" in text and "output 18.2%" in text  # |400-500| + |600-500| of 1,100


def test_gpus_and_patience_flags_and_the_table_loads_in_a_policy(tmp_path: Path) -> None:
    out = tmp_path / "c.csv"
    trace = tmp_path / "t.csv"
    trace.write_text("arrival,prompt,output\n0,100,50\n4,100,50\n8,3000,200\n")
    code, text = _run(str(trace), "--k", "2", "--gpus", "4", "--patience", "30",
                      "--out", str(out))
    assert code == 0, text
    rows = _table(out)
    assert [float(r["rate[/s per gpu]"]) for r in rows] == [2 / 8 / 4, 1 / 8 / 4]
    assert all(float(r["patience[s]"]) == 30 for r in rows)
    (tmp_path / "p.sli").write_text(TEMPLATE + 'classes from "c.csv"\n')
    policy = load_policy(tmp_path / "p.sli").policy
    assert [c.rate for c in policy.classes] == [2 / 8 / 4, 1 / 8 / 4]
    assert [c.patience for c in policy.classes] == [30, 30]


def test_mooncake_format_by_hand(tmp_path: Path) -> None:
    trace = tmp_path / "m.jsonl"
    trace.write_text("".join(json.dumps({"timestamp": t, "input_length": p,
                                         "output_length": o, "hash_ids": [1]}) + "\n"
                             for t, p, o in [(0, 500, 20), (1000, 700, 20), (4000, 600, 20)]))
    out = tmp_path / "c.csv"
    code, text = _run(str(trace), "--k", "1", "--out", str(out))
    assert code == 0, text
    assert "Mooncake" in text
    (row,) = _table(out)
    assert float(row["rate[/s]"]) == 3 / 4  # 3 requests over 4 s (timestamps in ms)
    assert float(row["prompt[tokens]"]) == 600


@needs_mooncake
def test_real_mooncake_trace_keeps_its_totals(tmp_path: Path) -> None:
    items = [json.loads(ln) for ln in MOONCAKE.read_text().splitlines() if ln.strip()]
    stamps = [i["timestamp"] for i in items]
    rate = len(items) / ((max(stamps) - min(stamps)) / 1000)
    out = tmp_path / "c.csv"
    code, text = _run(str(MOONCAKE), "--k", "6", "--seed", "3", "--out", str(out))
    assert code == 0, text
    rows = _table(out)
    rates = [float(r["rate[/s]"]) for r in rows]
    assert sum(rates) == pytest.approx(rate, rel=1e-12)
    mean_o = sum(q * float(r["output[tokens]"]) for q, r in zip(rates, rows, strict=True))
    assert mean_o / sum(rates) == pytest.approx(
        sum(i["output_length"] for i in items) / len(items), rel=1e-9)


def test_same_seed_same_table(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("arrival,prompt,output\n" + "".join(
        f"{i},{(i * 7919) % 3000 + 10},{(i * 104729) % 900 + 5}\n" for i in range(400)))
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    assert _run(str(trace), "--k", "5", "--seed", "11", "--out", str(a))[0] == 0
    assert _run(str(trace), "--k", "5", "--seed", "11", "--out", str(b))[0] == 0
    assert a.read_text().replace("a.csv", "b.csv") == b.read_text()


def test_policy_comparison_matches_a_solve_of_the_written_table(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("arrival,prompt,output\n" + "".join(
        f"{i / 4},{(i * 7919) % 3000 + 10},{(i * 104729) % 900 + 5}\n" for i in range(300)))
    (tmp_path / "template.sli").write_text(TEMPLATE + "slo { tpot <= 30 ms }\n")
    out = tmp_path / "c.csv"
    code, text = _run(str(trace), "--k", "3", "--patience", "20", "--policy",
                      str(tmp_path / "template.sli"), "--reference-k", "12", "--out", str(out),
                      "--plot", str(tmp_path / "g.png"))
    assert code == 0, text
    (tmp_path / "p.sli").write_text(TEMPLATE + "slo { tpot <= 30 ms }\n"
                                    'classes from "c.csv"\n')
    sol = solve_policy(load_policy(tmp_path / "p.sli").policy)
    assert sol.optimal and sol.objective is not None
    assert f"R* per GPU with 3 classes: {sol.objective:.6g}; with 12 classes: " in text
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("content", "words"), [
    ("when,what\n1,2\n", "cannot tell the format"),
    ("arrival,prompt,output\n0,10,5\n1,ten,5\n", ":3: prompt 'ten' is not a finite number"),
    ("arrival,prompt,output\n0,10,5\n", "rates need at least two arrivals"),
    ("arrival,prompt,output\n3,10,5\n3,10,5\n", "arrives at the same instant"),
    ("arrival,prompt,output\n0,10,5\n1,-4,5\n", "token counts must be non-negative"),
    ('{"timestamp": 0}\n', ":1: no key 'input_length'"),
])
def test_bad_traces_exit_2(tmp_path: Path, content: str, words: str) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text(content)
    code, text = _run(str(trace), "--out", str(tmp_path / "c.csv"))
    assert code == 2
    assert words in text
    assert not (tmp_path / "c.csv").exists()


def test_bad_options_and_outputs_exit_2(tmp_path: Path) -> None:
    trace = _plain(tmp_path)
    before = trace.read_text()
    assert _run(str(trace), "--out", str(trace))[0] == 2  # never over its own input
    assert trace.read_text() == before
    assert _run(str(trace), "--k", "0", "--out", str(tmp_path / "c.csv"))[0] == 2
    assert _run(str(trace), "--patience", "-1", "--out", str(tmp_path / "c.csv"))[0] == 2
    assert _run(str(trace), "--format", "azure", "--out", str(tmp_path / "c.csv"))[0] == 2
    code, text = _run(str(trace))
    assert code == 2 and "--out FILE is required" in text
