"""fluidgate's benchmarks (docs/performance.md): `python bench/run.py [--quick] [--out FILE]`.

Measures
1. a cold `fluidgate solve examples/two_class.sli -q` (the real console script, fresh
   processes);
2. parse + build + compile + solve + read back for generated policies of 10 to 10,000
   classes, next to the floor: the same LP built from numpy arrays and solved with highspy
   (`bench/floor.py`), array building included;
3. the 1,000-class policy with one SLO per class, against the floor with the same SLO rows;
4. at 10,000 classes, the same with HiGHS's interior point method.

Every measurement but the cold start runs with imports already warm; medians over repeated
runs. The objectives of fluidgate and the floor must agree to 1e-6 (relative) on every run,
or the script stops with exit status 1. Results go to a JSON file (default
`bench/results/<date>-<host>.json`) and a table on the terminal.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

if __name__ == "__main__" and not __package__:  # `python bench/run.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from bench.floor import (
    ClassArrays,
    FloorResult,
    arrays_from_spec,
    solve_floor,
)
from bench.generate import TABLE_FILE, class_table, generate, policy_text
from bench.records import OVERWRITE_HELP, refuse_existing, write_record
from bench.report import ms_text
from fluidgate.solvers.highs import stdout_silenced

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = "fluidgate.bench/v1"
OBJECTIVE_RTOL = 1e-6
COLD_TARGET_S = 0.5  # issue 10 (it was 1.5 s)
RATIO_TARGET = 3.0
FG_STAGES = ("parse", "build", "compile", "solve", "readback", "total")
FLOOR_STAGES = ("arrays", "load", "run", "readback", "total")
LIBRARIES = ("fluidgate", "pyomo", "highspy", "numpy", "lark", "sympy", "scipy", "rich")


class BenchError(Exception):
    """A result is wrong (not merely slow): the benchmark must not report it."""


@dataclass(frozen=True)
class Case:
    key: str
    classes: int
    slos: bool
    method: str
    runs: int
    warmup: bool = True
    reuse_parser: bool = True  # also time parsing with a reused `PolicyParser`
    table: bool = False  # classes from a CSV table (`classes from`) rather than class blocks
    floor_method: str | None = None  # the floor's HiGHS method, if not `method`

    @property
    def label(self) -> str:
        text = f"K={self.classes:,}"
        if self.table:
            text += " table"
        if self.slos:
            text += " + SLOs"
        if self.method != "auto":
            text += f" ({self.method})"
        return text


@dataclass
class CaseResult:
    case: Case
    n_slos: int = 0
    shape: tuple[int, int] = (0, 0)
    nnz: int = 0
    fluidgate_shape: tuple[int, int] | None = None
    fluidgate: dict[str, list[float]] = field(default_factory=dict)
    parse_reused: list[float] = field(default_factory=list)
    floor: dict[str, list[float]] = field(default_factory=dict)
    objective: float = 0.0
    floor_objective: float = 0.0
    max_rel_diff: float = 0.0

    def median(self, side: str, stage: str) -> float:
        samples = (self.fluidgate if side == "fluidgate" else self.floor)[stage]
        return statistics.median(samples)

    @property
    def ratio(self) -> float:
        return self.median("fluidgate", "total") / self.median("floor", "total")

    @property
    def ratio_reused_parser(self) -> float | None:
        """The ratio if the LALR tables were built once (`parse_policy(..., parser=p)`)."""
        if not self.parse_reused:
            return None
        fg = [t - p + r for t, p, r in zip(self.fluidgate["total"], self.fluidgate["parse"],
                                            self.parse_reused, strict=True)]
        return statistics.median(fg) / self.median("floor", "total")

    @property
    def ratio_without_parse(self) -> float:
        """The ratio of build + compile + solve + read back alone (`solve_policy`)."""
        fg = [t - p for t, p in zip(self.fluidgate["total"], self.fluidgate["parse"],
                                    strict=True)]
        return statistics.median(fg) / self.median("floor", "total")

    def to_json(self) -> dict[str, Any]:
        c = self.case
        return {
            "case": c.key,
            "label": c.label,
            "classes": c.classes,
            "slos": self.n_slos,
            "method": c.method,
            "runs": c.runs,
            "rows": self.shape[0],
            "cols": self.shape[1],
            "nnz": self.nnz,
            "fluidgate_rows_cols": list(self.fluidgate_shape) if self.fluidgate_shape else None,
            "objective": self.objective,
            "floor_objective": self.floor_objective,
            "max_rel_diff": self.max_rel_diff,
            "median_s": {
                "fluidgate": {s: self.median("fluidgate", s) for s in FG_STAGES},
                "parse_reused_parser": statistics.median(self.parse_reused)
                if self.parse_reused else None,
                "floor": {s: self.median("floor", s) for s in FLOOR_STAGES},
            },
            "ratio": self.ratio,
            "ratio_reused_parser": self.ratio_reused_parser,
            "ratio_without_parse": self.ratio_without_parse,
            "samples_s": {"fluidgate": self.fluidgate, "parse_reused_parser": self.parse_reused,
                          "floor": self.floor},
        }


# --- machine ---------------------------------------------------------------------------------

def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _command(args: list[str]) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True, check=False, cwd=ROOT)
    except OSError:
        return ""
    return out.stdout.strip()


def machine_info() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kib = next((int(line.split()[1]) for line in _read("/proc/meminfo").splitlines()
                    if line.startswith("MemTotal:")), 0)
    versions: dict[str, str | None] = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = None
    status = _command(["git", "status", "--porcelain", "--untracked-files=no"])
    return {
        "hostname": socket.gethostname(),
        "uname": _command(["uname", "-a"]) or " ".join(platform.uname()),
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "libraries": versions,
        "git_commit": _command(["git", "rev-parse", "--short", "HEAD"]) or None,
        "git_dirty": bool(status),
    }


# --- measurements ----------------------------------------------------------------------------

def cold_start(runs: int, progress: Progress, task: Any) -> dict[str, Any]:
    """Wall time of the real console script in fresh processes, run as the environment is
    (one unmeasured run first, so the OS file cache is warm)."""
    exe = Path(sys.executable).parent / "fluidgate"
    if not exe.exists():
        raise BenchError(f"console script {exe} not found: install fluidgate into this venv")
    cmd = [str(exe), "solve", "examples/two_class.sli", "-q"]
    times: list[float] = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        elapsed = time.perf_counter() - t0
        if out.returncode != 0:
            raise BenchError(f"{' '.join(cmd)} exited with {out.returncode}:\n{out.stderr}")
        if i > 0:
            times.append(elapsed)
            progress.advance(task)
    median = statistics.median(times)
    return {
        "command": " ".join(["fluidgate", *cmd[1:]]),
        "runs": runs,
        "samples_s": times,
        "median_s": median,
        "min_s": min(times),
        "target_s": COLD_TARGET_S,
        "met": median < COLD_TARGET_S,
        "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE"),
    }


def _options(method: str) -> Any:
    """`ipm+crossover`: the interior point, crossing over whatever the LP's size."""
    from fluidgate.solvers.base import SolveOptions

    if method == "ipm+crossover":
        return SolveOptions(method="ipm", crossover=True)
    return SolveOptions(method=method)


def _fluidgate_once(text: str, method: str, base: Path | None) -> tuple[dict[str, float], float]:
    from fluidgate.pipeline import solve_policy
    from fluidgate.sli_dsl.loader import parse_policy
    from fluidgate.solvers.base import TerminationStatus

    t0 = time.perf_counter()
    checked = parse_policy(text, "generated.sli", base_dir=base)
    t1 = time.perf_counter()
    with stdout_silenced():
        sol = solve_policy(checked.policy, "highs", _options(method))
    t2 = time.perf_counter()
    if sol.status is not TerminationStatus.OPTIMAL or sol.objective is None:
        raise BenchError(f"fluidgate did not solve the generated policy: {sol.status} "
                         f"({sol.message})")
    tm = sol.timings
    inner = tm["build"] + tm["compile"] + tm["solve"]
    stages = {"parse": t1 - t0, "build": tm["build"], "compile": tm["compile"],
              "solve": tm["solve"], "readback": (t2 - t1) - inner, "total": t2 - t0}
    return stages, float(sol.objective)


def _parse_reused(text: str, parser: Any, base: Path | None) -> float:
    from fluidgate.sli_dsl.loader import parse_policy

    t0 = time.perf_counter()
    parse_policy(text, "generated.sli", base_dir=base, parser=parser)
    return time.perf_counter() - t0


def _fluidgate_shape(text: str, base: Path | None) -> tuple[int, int]:
    """Untimed: the size of the LP fluidgate compiles (rows, columns)."""
    from fluidgate.formulations.fluid_lp import build_fluid_lp
    from fluidgate.formulations.matrix import compile_matrix
    from fluidgate.formulations.slo import add_slos
    from fluidgate.sli_dsl.loader import parse_policy

    lp = build_fluid_lp(parse_policy(text, base_dir=base).policy)
    add_slos(lp)
    return compile_matrix(lp).matrix.shape


def _check(case: Case, fg: float, floor: float) -> float:
    rel = abs(fg - floor) / max(abs(floor), 1e-300)
    if not rel <= OBJECTIVE_RTOL:
        raise BenchError(f"{case.label}: fluidgate's objective {fg!r} and the floor's {floor!r} "
                         f"differ by {rel:.3g} (relative), more than {OBJECTIVE_RTOL:g}")
    return rel


def _floor(arrays: ClassArrays, case: Case) -> FloorResult:
    try:
        return solve_floor(arrays, case.floor_method or case.method)
    except RuntimeError as exc:  # the floor's own status checks
        raise BenchError(f"{case.label}: {exc}") from exc


def run_case(case: Case, seed: int, progress: Progress, task: Any) -> CaseResult:
    from fluidgate.sli_dsl.parser import PolicyParser

    spec = generate(case.classes, seed=seed, slos=case.slos)
    text = policy_text(spec, table=case.table)
    base: Path | None = None
    if case.table:
        base = Path(tempfile.mkdtemp(prefix="fluidgate-bench-"))
        (base / TABLE_FILE).write_text(class_table(spec))
    arrays: ClassArrays = arrays_from_spec(spec)
    res = CaseResult(case, n_slos=len(spec.slos))
    res.fluidgate = {s: [] for s in FG_STAGES}
    res.floor = {s: [] for s in FLOOR_STAGES}
    parser = PolicyParser()
    if case.reuse_parser:
        parser.parse('policy "warm"\n')  # build the LALR tables before the reused-parser timing
    if case.warmup:
        progress.update(task, description=f"{case.label}: warm-up")
        res.fluidgate_shape = _fluidgate_shape(text, base)
        _floor(arrays, case)
    for i in range(case.runs):
        progress.update(task, description=f"{case.label}: run {i + 1}/{case.runs}")
        gc.collect()
        stages, objective = _fluidgate_once(text, case.method, base)
        gc.collect()
        fl = _floor(arrays, case)
        gc.collect()
        if case.reuse_parser:
            res.parse_reused.append(_parse_reused(text, parser, base))
        res.max_rel_diff = max(res.max_rel_diff, _check(case, objective, fl.objective))
        for s in FG_STAGES:
            res.fluidgate[s].append(stages[s])
        for s in FLOOR_STAGES:
            res.floor[s].append(fl.timings[s])
        res.objective, res.floor_objective = objective, fl.objective
        res.shape, res.nnz = fl.shape, fl.nnz
        progress.advance(task)
    if base is not None:
        shutil.rmtree(base, ignore_errors=True)
    return res


def plan(quick: bool, large: bool = False) -> list[Case]:
    if quick:
        return [Case("k10", 10, False, "auto", 5), Case("k100", 100, False, "auto", 5),
                Case("k1000", 1000, False, "auto", 5),
                Case("k1000-slo", 1000, True, "auto", 5),
                Case("k1000-table", 1000, False, "auto", 5, table=True)]
    big = [  # issue 10: 50,000 classes, the interior point without and with crossover
        Case("k50000-table", 50000, False, "auto", 1, warmup=False, reuse_parser=False,
             table=True, floor_method="ipm-nocrossover"),
        Case("k50000-table-crossover", 50000, False, "ipm+crossover", 1, warmup=False,
             reuse_parser=False, table=True, floor_method="ipm"),
    ] if large else []
    return [
        Case("k1000-table", 1000, False, "auto", 7, table=True),
        Case("k10000-table", 10000, False, "auto", 3, warmup=False, reuse_parser=False,
             table=True, floor_method="ipm"),
        *big,
        Case("k10", 10, False, "auto", 9),
        Case("k100", 100, False, "auto", 9),
        Case("k1000", 1000, False, "auto", 7),
        Case("k1000-slo", 1000, True, "auto", 7),
        Case("k10000", 10000, False, "auto", 3, warmup=False, reuse_parser=False),
        Case("k10000-ipm", 10000, False, "ipm", 3, warmup=False, reuse_parser=False),
    ]


# --- report ----------------------------------------------------------------------------------

def targets(cold: dict[str, Any] | None, results: list[CaseResult]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if cold is not None:
        out.append({"target": f"cold `fluidgate solve examples/two_class.sli` < {COLD_TARGET_S} s",
                    "value": cold["median_s"], "unit": "s", "limit": COLD_TARGET_S,
                    "met": cold["met"]})
    for r in results:
        if r.case.key in ("k1000", "k1000-slo", "k1000-table", "k10000-table"):
            what = "with one SLO per class " if r.case.slos else ""
            what += "as a class table " if r.case.table else ""
            out.append({"target": f"K={r.case.classes:,} {what}fluidgate ≤ 3× direct highspy",
                        "value": r.ratio, "unit": "×", "limit": RATIO_TARGET,
                        "met": r.ratio <= RATIO_TARGET})
    return out


def results_tables(results: list[CaseResult]) -> tuple[Table, Table]:
    fg = Table(title="fluidgate path (medians, ms)", title_justify="left")
    for col in ("case", "rows×cols", "parse", "build", "compile", "solve", "read back", "total"):
        fg.add_column(col, justify="left" if col == "case" else "right")
    fl = Table(title="direct highspy floor (medians, ms) and ratio", title_justify="left")
    for col in ("case", "arrays", "load", "run", "read back", "total", "ratio",
                "parser reused", "without parse", "max Δobj"):
        fl.add_column(col, justify="left" if col == "case" else "right")
    for r in results:
        fg.add_row(r.case.label, f"{r.shape[0]:,}×{r.shape[1]:,}",
                   *(ms_text(r.median("fluidgate", s)) for s in FG_STAGES))
        reused = r.ratio_reused_parser
        fl.add_row(r.case.label, *(ms_text(r.median("floor", s)) for s in FLOOR_STAGES),
                   f"{r.ratio:.1f}×", "—" if reused is None else f"{reused:.1f}×",
                   f"{r.ratio_without_parse:.1f}×", f"{r.max_rel_diff:.0e}")
    return fg, fl


def default_out() -> Path:
    host = socket.gethostname().split(".")[0] or "dev"
    return ROOT / "bench" / "results" / f"{dt.date.today().isoformat()}-{host}.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true",
                    help="smaller run: up to 1,000 classes, 5 runs each")
    ap.add_argument("--out", type=Path, default=None,
                    help="results JSON (default bench/results/<date>-<host>.json); an "
                         "existing file is kept unless --overwrite")
    ap.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated policies")
    ap.add_argument("--cold-runs", type=int, default=None,
                    help="fresh processes for the cold start (default 9, 7 with --quick)")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-start measurement")
    ap.add_argument("--large", action="store_true",
                    help="also 50,000 classes as a table, the interior point without and with "
                         "crossover (one run each; several minutes)")
    args = ap.parse_args(argv)
    console = Console()
    if not console.is_terminal:  # a log file or a pipe: room for the tables
        console.width = max(console.width, 120)
    cases = plan(args.quick, args.large)
    cold_runs = args.cold_runs if args.cold_runs is not None else (7 if args.quick else 9)
    if not args.no_cold and cold_runs < 1:
        ap.error("--cold-runs must be at least 1")
    out_path: Path = args.out or default_out()
    refuse_existing(ap, out_path, args.overwrite)  # before minutes of measuring
    started = dt.datetime.now(dt.UTC)
    load_start = os.getloadavg()
    results: list[CaseResult] = []
    cold: dict[str, Any] | None = None
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            if not args.no_cold:
                task = progress.add_task("cold start", total=cold_runs)
                cold = cold_start(cold_runs, progress, task)
                console.log(f"cold start: median {cold['median_s']:.3f} s over {cold_runs} runs")
            with stdout_silenced():  # the HiGHS banner of this process's first Highs()
                import highspy

                highspy.Highs()  # type: ignore[no-untyped-call]
            for case in cases:
                task = progress.add_task(case.label, total=case.runs)
                res = run_case(case, args.seed, progress, task)
                results.append(res)
                fg_ms = ms_text(res.median("fluidgate", "total"))
                floor_ms = ms_text(res.median("floor", "total"))
                console.log(f"{case.label}: fluidgate {fg_ms} ms, floor {floor_ms} ms, "
                            f"{res.ratio:.1f}×")
    except BenchError as exc:
        console.print(f"[bold red]benchmark failed:[/] {exc}")
        return 1
    checks = targets(cold, results)
    doc = {
        "schema": SCHEMA,
        "date": started.date().isoformat(),
        "started_utc": started.isoformat(timespec="seconds"),
        "seconds": round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1),
        "quick": args.quick,
        "seed": args.seed,
        "machine": machine_info(),
        # 1-, 5- and 15-minute load averages: other work on the machine skews the timings
        "loadavg_start": [round(v, 2) for v in load_start],
        "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        "objective_rtol": OBJECTIVE_RTOL,
        "cold_start": cold,
        "cases": [r.to_json() for r in results],
        "targets": checks,
    }
    write_record(out_path, doc)

    for table in results_tables(results):
        console.print(table)
    tt = Table(title="targets", title_justify="left")
    for col in ("target", "measured", "limit", "met"):
        tt.add_column(col)
    for c in checks:
        value = f"{c['value']:.3f} s" if c["unit"] == "s" else f"{c['value']:.2f}×"
        limit = f"{c['limit']} s" if c["unit"] == "s" else f"{c['limit']}×"
        tt.add_row(c["target"], value, limit, "[green]yes[/]" if c["met"] else "[red]no[/]")
    console.print(tt)
    console.print(f"results written to {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
