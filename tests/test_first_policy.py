"""examples/first_policy.sli and docs/first-policy.md: the policy solves to what an
independent LP says, and every number the page quotes is what fluidgate computes."""

from __future__ import annotations

import re
from functools import cache

import pytest
from typer.testing import CliRunner

from fluidgate.cli import app
from fluidgate.pipeline import solve_policy
from fluidgate.sli_dsl.loader import parse_policy
from fluidgate.solution import Solution
from tests import independent
from tests.conftest import EXAMPLES, ROOT

EXAMPLE = (EXAMPLES / "first_policy.sli").read_text(encoding="utf-8")
PAGE = (ROOT / "docs" / "first-policy.md").read_text(encoding="utf-8")
SURGE_FILE = ROOT / "tests" / "fixtures" / "docs" / "first_policy_surge.sli"
N, B, C = 64, 32, 512
TAU, TAU_SOLO = 0.0174 + 0.062e-3 * C, 0.022
# (rate per GPU, prompt, output, patience, $ per input token, $ per output token)
CLASSES = {"chat": (3.0, 600, 250, 15.0, 0.50e-6, 1.50e-6),
           "summarisation": (0.25, 6000, 500, 120.0, 0.30e-6, 1.20e-6),
           "code": (0.6, 2500, 400, 60.0, 1.00e-6, 4.00e-6)}
SOFT = "soft abandonment(all) <= 2 % penalty 0.01"
CAP = "abandonment(chat) <= 5 %"


def variant(*, chat_rate: float | None = None, penalty: str | None = None,
            drop: tuple[str, ...] = ()) -> str:
    text = EXAMPLE
    if chat_rate is not None:
        text = text.replace("rate = 3.0 /s per gpu", f"rate = {chat_rate} /s per gpu")
    if penalty is not None:
        text = text.replace("penalty 0.01", f"penalty {penalty}")
    kept = [ln for ln in text.splitlines() if not any(ln.strip().startswith(d) for d in drop)]
    return "\n".join(kept) + "\n"


@cache
def solved(text: str) -> Solution:
    return solve_policy(parse_policy(text).policy)


def by_name(sol: Solution) -> dict[str, object]:
    return {c.name: c for c in sol.classes}


def independent_instance(hard: bool, soft_penalty: float | None) -> independent.Instance:
    """The example written by hand: rows from the definitions of each metric."""
    klasses = [independent.Klass(r, p, o, 1 / pat, cin, cout)
               for r, p, o, pat, cin, cout in CLASSES.values()]
    inst = independent.Instance(B=B, C=C, tau=TAU, tau_solo=TAU_SOLO, classes=klasses)
    lam = {k: v[0] for k, v in CLASSES.items()}
    idx = {k: i for i, k in enumerate(CLASSES)}
    prefill = {k: v[1] * TAU / C for k, v in CLASSES.items()}
    theta = {k: 1 / v[3] for k, v in CLASSES.items()}
    if hard:
        inst.extra = [  # ttft = q_p/λ + P·τ/C ≤ T; tpot(chat) ≤ T ⇔ (1−T/τ)y_m + (1−Tγ)y_s ≤ 0
            ({"q_p:0": 1 / lam["chat"]}, 0.3 - prefill["chat"]),
            ({"y_m:0": 1 - 0.030 / TAU, "y_s:0": 1 - 0.030 / TAU_SOLO}, 0.0),
            ({"q_p:2": 1 / lam["code"]}, 1.0 - prefill["code"]),
            ({"q_p:0": theta["chat"] / lam["chat"], "q_d:0": theta["chat"] / lam["chat"]},
             0.05),
        ]
    if soft_penalty is not None:
        inst.soft = [({f"q_p:{idx[k]}": theta[k] / lam[k], f"q_d:{idx[k]}": theta[k] / lam[k]},
                      0.02, soft_penalty) for k in CLASSES]
    return inst


@pytest.mark.parametrize(("hard", "penalty"), [(False, None), (True, None), (True, 0.01),
                                               (True, 5.0), (True, 0.001)])
def test_example_matches_the_independent_lp(hard: bool, penalty: float | None) -> None:
    drop = () if hard else ("ttft", "tpot", "abandonment", "soft")
    if penalty is None:
        drop = (*drop, "soft")
    text = variant(penalty=None if penalty is None else f"{penalty:g}", drop=drop)
    ref = independent.solve(independent_instance(hard, penalty))
    sol = solved(text)
    assert sol.optimal and ref.objective is not None
    assert sol.objective == pytest.approx(ref.objective, rel=1e-7)


def test_revenue_is_what_served_requests_pay() -> None:
    """Bundled pricing by hand: a chat request pays 600·0.5e-6 + 250·1.5e-6 = $0.000675."""
    sol = solved(EXAMPLE)
    paid = {k: v[1] * v[4] + v[2] * v[5] for k, v in CLASSES.items()}
    assert paid["chat"] == pytest.approx(0.000675)
    total = sum(c.served * paid[c.name] for c in sol.classes)
    assert sol.revenue_rate == pytest.approx(total / N, rel=1e-12)
    assert sol.objective == pytest.approx(sol.revenue_rate - sol.penalty, rel=1e-12)


def test_ttft_bound_leaves_only_so_much_abandonment_to_the_prefill_queue() -> None:
    """ttft(chat) = wait + P·τ/C ≤ 300 ms, and abandonment from the prefill queue is θ·wait
    (Little: q_p = λ·wait), so at most (0.3 − 600·τ/512)/15 of chat leaves before prefill."""
    chat = by_name(solved(EXAMPLE))["chat"]
    prefill = 600 * TAU / C
    assert chat.ttft == pytest.approx(0.3, rel=1e-9)  # binds
    assert chat.wait == pytest.approx(0.3 - prefill, rel=1e-9)
    assert chat.wait / 15 == pytest.approx(0.01616, abs=5e-6)
    decode_part = chat.abandonment - chat.wait / 15
    assert decode_part == pytest.approx(chat.q_d / 15 / 3.0, rel=1e-9)


def fmt(v: float, spec: str) -> str:
    return format(v, spec)


def quotes() -> dict[str, str]:
    """Every number the page quotes, formatted as the page writes it."""
    base = solved(EXAMPLE)
    cls = by_name(base)
    q = {
        "objective": fmt(base.objective, ".6f"),
        "revenue": fmt(base.revenue_rate, ".6f"),
        "penalty": fmt(base.penalty, ".6f"),
        "per hour": fmt(base.objective * N * 3600, ",.0f"),
        "chat abandonment": fmt(100 * cls["chat"].abandonment, ".2f") + " %",
        "chat parked": fmt(cls["chat"].q_d * N, ".0f"),
        "prefill share": fmt(100 * cls["chat"].wait / 15, ".3f") + " %",
        "chat prefill": fmt(600 * TAU / C * 1e3, ".2f") + " ms",
    }
    for p in ("5", "0.001"):
        sol = solved(variant(penalty=p))
        c = by_name(sol)
        q[f"objective at {p}"] = fmt(sol.objective, ".6f")
        q[f"revenue at {p}"] = fmt(sol.revenue_rate, ".6f")
        q[f"penalty at {p}"] = fmt(sol.penalty, ".6f")
        for name in CLASSES:
            q[f"{name} at {p}"] = fmt(100 * c[name].abandonment, ".2f") + " %"
    for name in CLASSES:
        q[f"{name} at 0.01"] = fmt(100 * cls[name].abandonment, ".2f") + " %"
    hard = solved(variant(drop=("soft",)).replace(CAP, "abandonment(all) <= 2 %"))
    assert hard.conflict is not None
    chat_bound = next(i for g in hard.conflict.groups for i in g if "(chat)" in i.label)
    q["chat nearest"] = chat_bound.nearest_text().rpartition(" bound ")[2]
    tight = by_name(solved(variant().replace(CAP, "abandonment(chat) <= 1.62 %")))
    q["tight cap backlog"] = fmt(tight["chat"].q_d * N, ".1f") + " requests"
    q["tight cap summarisation"] = fmt(100 * tight["summarisation"].abandonment, ".2f") + " %"
    surge = solved(variant(chat_rate=5.0, drop=(CAP, "soft")))
    s = by_name(surge)
    q["surge parked"] = fmt(s["chat"].q_d * N, ",.0f")
    q["surge chat abandonment"] = fmt(100 * s["chat"].abandonment, ".0f") + " %"
    q["surge summarisation abandonment"] = fmt(100 * s["summarisation"].abandonment, ".0f") + " %"
    q["surge chat ttft"] = fmt(s["chat"].ttft * 1e3, ".0f") + " ms"
    return q


def test_page_quotes_what_fluidgate_computes() -> None:
    missing = {k: v for k, v in quotes().items() if v not in PAGE}
    assert not missing, f"the page does not show these values: {missing}"


def test_page_shows_the_example_as_it_is() -> None:
    block = re.search(r"```text\n(# A first real policy.*?)```\n", PAGE, re.S)
    assert block is not None
    assert block.group(1) == EXAMPLE


def test_surge_transcript_is_what_fluidgate_prints(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SURGE_FILE.read_text(encoding="utf-8") == variant(chat_rate=5.0)
    block = re.search(r"```text\n\$ fluidgate solve first_policy_surge.sli\n(.*?)```\n", PAGE,
                      re.S)
    assert block is not None
    monkeypatch.chdir(SURGE_FILE.parent)
    res = CliRunner().invoke(app, ["solve", SURGE_FILE.name], env={"COLUMNS": "100"})
    expected = block.group(1).rstrip("\n").split("\n$ echo $?\n")
    assert res.output.rstrip("\n") == expected[0]
    assert res.exit_code == int(expected[1])
