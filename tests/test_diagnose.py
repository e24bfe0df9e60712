"""Infeasible policies: every conflict is found, each is irreducible, and each line's nearest
feasible bound is exact (re-solving at the printed bound is feasible, 1 % tighter is not)."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fluidgate.cli import app
from fluidgate.conflict import display_outward
from fluidgate.pipeline import solve_policy
from fluidgate.sli_dsl.loader import parse_policy
from tests import independent
from tests.conftest import REFERENCE, with_slo

RUN = CliRunner()
TAU = 0.0174 + 6.2e-5 * 256
MU_P = {"decode_heavy": 256 / (300 * TAU), "prefill_heavy": 256 / (3000 * TAU)}
LAM, THETA = 0.5, 0.1
NEAREST = re.compile(r"^ {8}(.+?): nearest feasible bound ([-0-9.]+)(?: (\S+))?$", re.M)


def solve(*lines: str):  # type: ignore[no-untyped-def]
    return solve_policy(parse_policy(with_slo(REFERENCE, *lines)).policy)


def feasible(*lines: str) -> bool:
    return solve(*lines).optimal


def groups(*lines: str) -> list[list[str]]:
    sol = solve(*lines)
    assert not sol.optimal and sol.conflict is not None
    return [[item.label for item in g] for g in sol.conflict.groups]


TWO_CONFLICTS = ("abandonment(prefill_heavy) <= 5 %", "ttft(decode_heavy) <= 2 s",
                 "spread(prefill) <= 0.05", "ttft(prefill_heavy) <= 100 ms",
                 "tpot <= 30 ms")


def test_two_independent_conflicts_are_both_reported() -> None:
    found = groups(*TWO_CONFLICTS)
    assert found == [["abandonment(prefill_heavy) <= 5 %", "spread(prefill) <= 0.05"],
                     ["ttft(prefill_heavy) <= 100 ms"]]
    named = {label for g in found for label in g}
    others = [ln for ln in TWO_CONFLICTS if ln not in named]
    assert feasible(*others)  # together they cover the infeasibility
    for g in found:  # each is a conflict, and irreducible
        assert not feasible(*g)
        for dropped in g:
            assert feasible(*[ln for ln in g if ln != dropped])
    # the old promise was false here: removing one line of the first conflict is not enough
    assert not feasible(*[ln for ln in TWO_CONFLICTS if ln != found[0][0]])


def test_message_states_only_what_is_true(tmp_path: Path) -> None:
    path = tmp_path / "p.sli"
    path.write_text(with_slo(REFERENCE, *TWO_CONFLICTS), encoding="utf-8")
    res = RUN.invoke(app, ["solve", str(path)])
    assert res.exit_code == 3, res.output
    assert "makes the policy feasible:" not in res.output.replace(
        "removing all of them makes the policy feasible:", "")
    assert "form 2 conflicts" in res.output
    assert "conflict 1 of 2:" in res.output and "conflict 2 of 2:" in res.output
    assert f"{path}:41:5: error: conflicting: ttft(prefill_heavy) <= 100 ms" in res.output


def hand_bounds() -> dict[str, float]:
    """Derived on paper from the reference instance (μ_p, λ = 0.5, θ = 0.1):

    - ttft(prefill_heavy) cannot go below its prefill alone, P·τ/C = 3000·τ/256;
    - with spread(prefill) ≤ 0.05, x_ph ≤ λ/μ_p,dh + 0.05, so abandonment(ph) ≥
      1 − μ_p,ph·x_ph/λ (decode capacity is not binding there);
    - with abandonment(ph) ≤ 5 %, x_ph ≥ 0.95·λ/μ_p,ph while x_dh ≤ λ/μ_p,dh.
    """
    x_dh_max = LAM / MU_P["decode_heavy"]
    return {
        "ttft(prefill_heavy) <= 100 ms": 3000 * TAU / 256,
        "abandonment(prefill_heavy) <= 5 %":
            1 - MU_P["prefill_heavy"] * (x_dh_max + 0.05) / LAM,
        "spread(prefill) <= 0.05": 0.95 * LAM / MU_P["prefill_heavy"] - x_dh_max,
    }


def test_nearest_bounds_match_hand_derivations(tmp_path: Path) -> None:
    path = tmp_path / "p.sli"
    path.write_text(with_slo(REFERENCE, *TWO_CONFLICTS), encoding="utf-8")
    out = tmp_path / "p.json"
    res = RUN.invoke(app, ["solve", str(path), "--json", str(out)])
    assert res.exit_code == 3
    doc = json.loads(out.read_text())["conflict"]
    assert doc["conflicts"] == 2 and doc["bounds_with_other_conflicts_set_aside"] is True
    got = {s["label"]: s["nearest_feasible_bound"] for s in doc["slos"]}
    assert got == pytest.approx(hand_bounds(), rel=1e-7)
    printed = {label: f"{value} {unit}" for label, value, unit in NEAREST.findall(res.output)}
    assert printed == {"ttft(prefill_heavy) <= 100 ms": "390 ms",  # 389.906 ms, rounded up
                       "abandonment(prefill_heavy) <= 5 %": "64.36 %",  # 64.3528 %
                       "spread(prefill) <= 0.05": "0.1658 "}  # 0.165711
    assert {s["label"]: s["nearest_feasible_bound_display"] for s in doc["slos"]} == {
        k: v.strip() for k, v in printed.items()}


def test_tpot_nearest_bound_matches_independent_bisection() -> None:
    """The tpot row divides by the decode rate (Dinkelbach); check against bisection on
    the independent formulation of tests/independent.py."""
    sol = solve("tpot <= 22.5 ms", "abandonment(all) <= 10 %")
    assert sol.conflict is not None
    (group,) = sol.conflict.groups
    tpot = next(item for item in group if item.label.startswith("tpot"))
    inst = independent.reference_instance()
    inst.abandonment_max = 0.10
    lo, hi = 0.0225, 0.030
    for _ in range(60):
        inst.tpot_max = (lo + hi) / 2
        if independent.solve(inst).status == "optimal":
            hi = inst.tpot_max
        else:
            lo = inst.tpot_max
    assert tpot.nearest_bound == pytest.approx(hi, rel=1e-7)


def tighter(value: str, op: str) -> str:
    v = float(value)
    return repr(v * 0.99 if (op == "<=") == (v > 0) else v * 1.01)


@pytest.mark.parametrize("lines", [
    ("abandonment(prefill_heavy) <= 5 %", "spread(prefill) <= 0.05", "tpot <= 30 ms"),
    ("tpot <= 22.2 ms", "abandonment(all) <= 10 %"),
    ("ttft(decode_heavy) - ttft(prefill_heavy) >= 1 s", "abandonment(decode_heavy) <= 5 %"),
    ("ttft(prefill_heavy) <= 100 ms", "served(decode_heavy) >= 0.4 /s per gpu"),
], ids=["abandonment-spread", "tpot-abandonment", "ttft-difference", "ttft-below-prefill"])
def test_printed_bound_is_feasible_and_one_percent_tighter_is_not(
    tmp_path: Path, lines: tuple[str, ...]
) -> None:
    path = tmp_path / "p.sli"
    path.write_text(with_slo(REFERENCE, *lines), encoding="utf-8")
    res = RUN.invoke(app, ["solve", str(path)])
    assert res.exit_code == 3, res.output
    found = NEAREST.findall(res.output)
    assert found, res.output
    expanded = [ln.replace("(all)", f"({c})") for ln in lines
                for c in (("decode_heavy", "prefill_heavy") if "(all)" in ln else ("",))]
    for label, value, unit in found:
        rest = [ln for ln in expanded if ln != label]
        assert len(rest) == len(expanded) - 1
        head, op, _ = re.split(r" (<=|>=|==) ", label, maxsplit=1)
        moved = f"{head} {op} {value} {unit}".strip()
        assert feasible(*rest, moved), moved
        assert not feasible(*rest, f"{head} {op} {tighter(value, op)} {unit}".strip()), moved


def test_line_that_no_bound_alone_fixes_says_so() -> None:
    """x_ph is capped by spread (from abandonment ≤ 5 %) *and* by a second line; both caps
    must move, so each alone has no nearest bound while the conflict names one of them."""
    sol = solve("abandonment(prefill_heavy) <= 5 %", "spread(prefill) <= 0.05",
                "spread(prefill) <= 0.06")
    assert sol.conflict is not None
    (group,) = sol.conflict.groups
    texts = [item.nearest_text() for item in group]
    assert any("no bound on this line alone" in t for t in texts), texts


@pytest.mark.parametrize(("value", "direction", "expected"), [
    (389.90625, 1, "390"), (64.3528, 1, "64.36"), (0.165711, 1, "0.1658"),
    (149.084375, -1, "149"), (76.8, 1, "76.8"), (76.80000000001, 1, "76.8"),
    (2000.4, -1, "2000"), (12345.6, 1, "12350"), (-5.5555, 1, "-5.555"),
])
def test_display_rounds_outward(value: float, direction: int, expected: str) -> None:
    assert display_outward(value, direction) == expected


@pytest.mark.parametrize(("line", "warned"), [
    ("ttft(prefill_heavy) <= 100 ms", ["prefill_heavy"]),
    ("ttft(all) <= 300 ms", ["prefill_heavy"]),  # 39.0 ms and 389.9 ms of prefill
    ("ttft(all) <= 30 ms", ["decode_heavy", "prefill_heavy"]),
    ("ttft(prefill_heavy) <= 390 ms", []),
])
def test_check_warns_for_ttft_below_the_prefill_time(
    tmp_path: Path, line: str, warned: list[str]
) -> None:
    path = tmp_path / "p.sli"
    path.write_text(with_slo(REFERENCE, line), encoding="utf-8")
    res = RUN.invoke(app, ["check", str(path)])
    assert res.exit_code == 0, res.output
    got = re.findall(r"below the prefill time of class '(\w+)' alone \(P·τ/C = ([0-9.]+) ms",
                     res.output)
    prefill_ms = {"decode_heavy": 300 * TAU / 256 * 1e3, "prefill_heavy": 3000 * TAU / 256 * 1e3}
    assert [name for name, _ in got] == warned
    for name, ms in got:
        assert float(ms) == pytest.approx(prefill_ms[name], abs=0.05)


def test_progress_counts_every_trial_solve_and_ends_full() -> None:
    calls: list[tuple[int, int]] = []
    pol = parse_policy(with_slo(REFERENCE, *TWO_CONFLICTS)).policy
    sol = solve_policy(pol, diagnose_progress=lambda done, total: calls.append((done, total)))
    assert sol.conflict is not None
    dones = [d for d, _ in calls]
    assert dones[0] == 1 and all(b - a in (0, 1) for a, b in itertools.pairwise(dones))
    assert all(d <= t for d, t in calls)
    # base check; 5 deletion trials (the ttft line is found first), a coverage check, 4
    # trials (abandonment + spread), a coverage check that passes; 3 one-LP bounds
    assert calls[-1] == (dones[-1], dones[-1]) and dones[-1] == 1 + 5 + 1 + 4 + 1 + 3


def test_search_stops_at_its_limit_and_says_more_remain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fluidgate.formulations import diagnose

    monkeypatch.setattr(diagnose, "MAX_CONFLICTS", 1)
    path = tmp_path / "p.sli"
    path.write_text(with_slo(REFERENCE, *TWO_CONFLICTS), encoding="utf-8")
    out = tmp_path / "p.json"
    res = RUN.invoke(app, ["solve", str(path), "--json", str(out)])
    assert res.exit_code == 3, res.output
    assert "at least 1 conflict, and more remain" in res.output
    assert "removing all of them makes the policy feasible" not in res.output
    doc = json.loads(out.read_text())["conflict"]
    assert doc["more_conflicts"] is True and doc["conflicts"] == 1
    # the one conflict found first is the ttft line, its bound with everything else set aside
    (item,) = doc["slos"]
    assert item["label"] == "ttft(prefill_heavy) <= 100 ms"
    assert item["nearest_feasible_bound"] == pytest.approx(3000 * TAU / 256, rel=1e-7)
