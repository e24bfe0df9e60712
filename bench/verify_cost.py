"""What scaling and verification cost next to the solve: `python bench/verify_cost.py`.

For the generated policies of `bench/run.py` (1,000 classes, the same with one SLO per class,
10,000 classes), the median over several solves of the solver time, the verification time
(`Solution.timings["verify"]`: the row, bound, dual and plan checks), and the time to derive
the column magnitudes and scaling factors. Results are recorded in docs/performance.md.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:  # `python bench/verify_cost.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.generate import generate
from fluidgate.formulations.fluid_lp import build_fluid_lp
from fluidgate.formulations.matrix import column_magnitudes, compile_matrix
from fluidgate.formulations.slo import add_slos
from fluidgate.pipeline import solve_policy
from fluidgate.sli_dsl.loader import parse_policy
from fluidgate.solvers.highs import stdout_silenced
from fluidgate.solvers.scaling import Scaling

CASES = ((1000, False, 5), (1000, True, 5), (10000, False, 3))


def measure(classes: int, slos: bool, runs: int) -> dict[str, float]:
    policy = parse_policy(generate(classes, 0, slos).text(), "generated.sli").policy
    solve, verify, scaling = [], [], []
    for _ in range(runs):
        with stdout_silenced():
            sol = solve_policy(policy, "highs")
        if not sol.optimal or sol.verification is None or not sol.verification.ok:
            raise SystemExit(f"K={classes}: not a verified optimum ({sol.message})")
        solve.append(sol.timings["solve"])
        verify.append(sol.timings["verify"])
        lp = build_fluid_lp(policy)
        add_slos(lp)
        compiled = compile_matrix(lp)
        compiled.column_index()  # built once per solve anyway (the read-back needs it)
        t0 = time.perf_counter()
        Scaling.from_magnitudes(compiled.matrix, column_magnitudes(lp, compiled))
        scaling.append(time.perf_counter() - t0)
    return {"solve": statistics.median(solve), "verify": statistics.median(verify),
            "scaling": statistics.median(scaling)}


def main() -> int:
    print("| case | runs | solve (ms) | verify (ms) | verify / solve | scaling (ms) "
          "| scaling / solve |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for classes, slos, runs in CASES:
        m = measure(classes, slos, runs)
        name = f"K={classes:,}" + (" + SLOs" if slos else "")
        print(f"| {name} | {runs} | {m['solve'] * 1e3:,.1f} | {m['verify'] * 1e3:,.2f} | "
              f"{m['verify'] / m['solve']:.1%} | {m['scaling'] * 1e3:,.1f} | "
              f"{m['scaling'] / m['solve']:.1%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
