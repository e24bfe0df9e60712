"""Load time of `classes from "table.csv"` against the solve of the same policy.

A class table is read with the csv module and converted column by column, so loading 10,000
classes should stay a small fraction of solving them. This prints, for 1,000 and 10,000
classes, the median load (parse + check, the table included), one load of the same classes
written as `class` blocks, and one solve, in ms.

    python -m bench.class_table [--sizes 1000 10000] [--runs 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

HEAD = """policy "class table benchmark"
cluster {{
    gpus = {gpus}
    max_batch = 16
    chunk = 256 tokens
    iteration {{ mixed = 17.4 ms + 0.062 ms/token * chunk; solo = 22 ms }}
}}
pricing bundled {{ input = 0.5 per Mtok; output = 1.5 per Mtok }}
classes from "classes.csv"
slo {{ tpot <= 26 ms }}
"""


def table(n: int, seed: int) -> str:
    """Classes like the Dolly/ShareGPT ranges of bench/generate.py; rates per GPU."""
    rng = random.Random(seed)
    rows = ["name,rate[/s per gpu],prompt[tokens],output[tokens],patience[s]"]
    for i in range(n):
        rows.append(f"c{i},{rng.uniform(0.1, 1.0) / n:.6g},{rng.randint(40, 4000)},"
                    f"{rng.randint(20, 1500)},{rng.uniform(5, 120):.4g}")
    return "\n".join(rows) + "\n"


def blocks(csv_text: str) -> str:
    """The same classes as `class` blocks: what loading them cost before tables."""
    out = []
    for line in csv_text.splitlines()[1:]:
        name, rate, prompt, output, patience = line.split(",")
        out.append(f"class {name} {{ rate = {rate} /s per gpu; prompt = {prompt} tokens; "
                   f"output = {output} tokens; patience = {patience} s }}")
    return "\n".join(out) + "\n"


def measure(n: int, runs: int, seed: int) -> tuple[float, float, float, str]:
    from fluidgate.pipeline import solve_policy
    from fluidgate.sli_dsl.loader import load_policy

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        text = table(n, seed)
        (d / "classes.csv").write_text(text)
        (d / "p.sli").write_text(HEAD.format(gpus=500))
        (d / "b.sli").write_text(HEAD.format(gpus=500).replace(
            'classes from "classes.csv"\n', blocks(text)))
        load_policy(d / "b.sli")
        t0 = time.perf_counter()
        inline = load_policy(d / "b.sli").policy
        as_blocks = time.perf_counter() - t0
        load_policy(d / "p.sli")  # warm: the grammar, numpy
        loads = []
        for _ in range(runs):
            t0 = time.perf_counter()
            policy = load_policy(d / "p.sli").policy
            loads.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sol = solve_policy(policy)
        solve = time.perf_counter() - t0
    assert inline.classes == policy.classes  # the same LP either way
    return statistics.median(loads) * 1e3, as_blocks * 1e3, solve * 1e3, sol.status.value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print("| classes | table load (median ms) | as class blocks (ms) | solve (ms) | "
          "table load / solve | status |")
    print("|---|---|---|---|---|---|")
    for n in args.sizes:
        load, as_blocks, solve, status = measure(n, args.runs, args.seed)
        print(f"| {n:,} | {load:.0f} | {as_blocks:.0f} | {solve:.0f} | {load / solve:.1%} "
              f"| {status} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
