"""Gateway overhead (docs/performance.md): `python bench/gateway.py [--quick] [--out FILE]`.

What the gateway adds to a request, measured against a direct connection to the same
engine: one emulated mixed engine (`fluidgate engine`) and one gateway (`fluidgate
gateway`) as child processes on free loopback ports, the gateway pinned to one core and
the engine and this client to the others. The engine runs at a time scale of 10⁶ model
seconds per wall second, so its iterations take no wall time and a response is as fast as
its HTTP handling: what is left is the cost of the services, not emulated model time.

For streamed and non-streamed requests (8 prompt tokens, 4 output tokens), at each
concurrency of the sweep and on each path (direct, via the gateway), closed-loop clients
send at most `--requests` requests for at most `--seconds` seconds and record each
request's latency (send to the last byte) and, streamed, its time to the first token.
Added latency is the gateway path's median (p99) minus the direct path's, at concurrency
1. Throughput is completed requests per wall second at each concurrency, next to the CPU
seconds each process spent: the gateway's CPU seconds per request give the requests per
second it sustains on its one core when saturated.

The gateway lists the engine once per client of the largest concurrency as a mixed
engine, so its prefill slots (one per listed engine, as the plan has one per GPU) never
bind: the sweep measures the gateway's own work (parsing, the runtime gate and router,
two upstream requests per request, relaying), not the plan's admission. Every response
must be complete and the gateway's own served count must equal what was sent through it,
or the benchmark stops with exit status 1. Results go to a JSON file (default
`bench/results/gateway-<date>-<host>.json`, never replaced without `--overwrite`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __name__ == "__main__" and not __package__:  # `python bench/gateway.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench.records import OVERWRITE_HELP, refuse_existing, write_record
from bench.run import BenchError, machine_info

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = "fluidgate.bench-gateway/v1"
TIME_SCALE = 1e6  # model seconds per wall second: a 22 ms iteration lasts 22 ns
MAX_BATCH = 256  # decode slots per listed engine: never the limit here
CLASS = "decode_heavy"
REQUEST_TIMEOUT_S = 30.0
PATHS = ("direct", "gateway")
MODES = ("non-streamed", "streamed")


@dataclass(frozen=True)
class Config:
    concurrency: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    requests: int = 3000  # per concurrency and path, at most
    seconds: float = 10.0  # per concurrency and path, at most
    warmup: int = 50  # per mode and path, unmeasured
    prompt: int = 8
    output: int = 4
    idle_s: float = 2.0  # the gateway's CPU with no requests (health checks), measured first


QUICK = Config(concurrency=(1, 4, 16), requests=600, seconds=3.0, warmup=20)


@dataclass
class Services:
    """Where the two children listen and which processes to read CPU time from."""

    engine: str
    gateway: str
    pids: dict[str, int]
    cores: dict[str, list[int]]


# --- processes -------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pin(pid: int, cores: set[int]) -> None:
    """Every thread of `pid` onto `cores` (threads it starts later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(task.name), cores)


def core_plan() -> dict[str, list[int]]:
    """The gateway alone on the first core; the engine and the client on the rest."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return {"gateway": allowed, "engine": allowed, "client": allowed}
    return {"gateway": allowed[:1], "engine": allowed[1:2], "client": allowed[1:]}


async def start(children: Any, cfg: Config, tmp: Path) -> Services:
    from bench.simulator import reference_spec
    from fluidgate.controllers.spec import write_spec
    from fluidgate.simulator.config import spec_at

    spec = spec_at(reference_spec(), 1)
    spec = spec.model_copy(update={"cluster": spec.cluster.model_copy(
        update={"max_batch": MAX_BATCH})})
    spec_file = tmp / "spec.json"
    write_spec(spec, spec_file, inputs=[])
    scale = ["--time-scale", repr(TIME_SCALE)]
    engine = await children.start(["engine", "--role", "mixed", "--spec", str(spec_file),
                                   "--port", "0", "--stream-interval", "1000", *scale],
                                  tmp / "engine.log")
    listed = [a for _ in range(max(cfg.concurrency)) for a in ("--mixed", engine)]
    gateway = await children.start(["gateway", str(spec_file), "--port", "0", *scale,
                                    *listed], tmp / "gateway.log")
    pids = {"engine": children.procs[0].pid, "gateway": children.procs[1].pid}
    cores = core_plan()
    pin(pids["gateway"], set(cores["gateway"]))
    pin(pids["engine"], set(cores["engine"]))
    pin(os.getpid(), set(cores["client"]))
    return Services(engine, gateway, pids, cores)


# --- requests --------------------------------------------------------------------------------

def headers() -> dict[str, str]:
    """The same on both paths (the engine ignores them): the class, a patience that never
    runs out."""
    from fluidgate.controllers.spec import CLASS_HEADER
    from fluidgate.harness.gateway import PATIENCE_HEADER

    return {CLASS_HEADER: CLASS, PATIENCE_HEADER: "1e9"}


async def one_request(session: Any, url: str, body: dict[str, Any], output: int
                      ) -> tuple[float, float | None]:
    """(latency, time to the first token or None) in seconds; BenchError if incomplete."""
    t0 = time.perf_counter()
    first: float | None = None
    async with session.post(url, json=body) as r:
        if r.status != 200:
            raise BenchError(f"{url} answered {r.status}: {(await r.text())[:200]}")
        if not body["stream"]:
            tokens = (await r.json())["usage"]["completion_tokens"]
        else:
            tokens, done = 0, False
            async for raw in r.content:
                line = raw.strip()
                if line == b"data: [DONE]":
                    done = True
                elif line.startswith(b"data: {"):
                    n = json.loads(line[6:]).get("fluidgate", {}).get("tokens", 0)
                    if n and first is None:
                        first = time.perf_counter() - t0
                    tokens += n
            if not done:
                raise BenchError(f"{url}: a stream ended without [DONE]")
    if tokens != output:
        raise BenchError(f"{url}: {tokens} tokens instead of {output}")
    return time.perf_counter() - t0, first


async def level(session: Any, url: str, body: dict[str, Any], cfg: Config, concurrency: int,
                pids: dict[str, int]) -> dict[str, Any]:
    """`concurrency` closed-loop clients, together at most `cfg.requests` requests and
    `cfg.seconds` seconds (requests under way then finish); latencies and CPU per process."""
    from fluidgate.harness.report import _dist

    latency: list[float] = []
    ttft: list[float] = []
    sent = 0
    t0 = time.perf_counter()
    stop_at = t0 + cfg.seconds

    async def client() -> None:
        nonlocal sent
        while sent < cfg.requests and time.perf_counter() < stop_at:
            sent += 1
            lat, first = await one_request(session, url, body, cfg.output)
            latency.append(lat)
            if first is not None:
                ttft.append(first)

    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    c0 = time.process_time()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
    cpu["client"] = time.process_time() - c0
    return {"concurrency": concurrency, "requests": sent, "completed": len(latency),
            "wall_s": wall, "rps": len(latency) / wall, "latency_s": _dist(latency),
            "ttft_s": _dist(ttft) if body["stream"] else None, "cpu_s": cpu,
            "cpu_us_per_request": {k: 1e6 * v / max(len(latency), 1) for k, v in cpu.items()}}


def served_by_gateway(metrics_text: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(s.value for fam in text_string_to_metric_families(metrics_text)
               for s in fam.samples if s.name == "fluidgate_gateway_requests_total"
               and s.labels.get("outcome") == "served")


async def sweep(svc: Services, cfg: Config, advance: Callable[[str, int], None]
                ) -> dict[str, Any]:
    import aiohttp

    urls = {"direct": svc.engine + "/v1/completions",
            "gateway": svc.gateway + "/v1/completions"}
    through_gateway = finished = 0
    advance("the gateway's CPU while idle", finished)
    idle0 = cpu_seconds(svc.pids["gateway"])
    await asyncio.sleep(cfg.idle_s)
    out: dict[str, Any] = {
        "gateway_idle_cpu_share": (cpu_seconds(svc.pids["gateway"]) - idle0) / cfg.idle_s}
    async with aiohttp.ClientSession(
            headers=headers(), connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)) as session:
        for mode in MODES:
            body = {"prompt_tokens": cfg.prompt, "max_tokens": cfg.output,
                    "stream": mode == "streamed"}
            for path in PATHS:
                for _ in range(cfg.warmup):
                    await one_request(session, urls[path], body, cfg.output)
                through_gateway += cfg.warmup if path == "gateway" else 0
            levels: dict[str, list[dict[str, Any]]] = {p: [] for p in PATHS}
            for i, c in enumerate(cfg.concurrency):
                # alternate which path goes first, so a drift in the machine's load does
                # not always fall on the same one
                for path in PATHS if i % 2 == 0 else PATHS[::-1]:
                    advance(f"{mode}, {path}, {c} at once", finished)
                    res = await level(session, urls[path], body, cfg, c, svc.pids)
                    levels[path].append(res)
                    finished += 1
                    through_gateway += res["completed"] if path == "gateway" else 0
            out[mode] = summary(levels, out["gateway_idle_cpu_share"])
        advance("checking the gateway's counts", finished)
        async with session.get(svc.gateway + "/metrics") as r:
            served = served_by_gateway(await r.text())
    if served != through_gateway:
        raise BenchError(f"the gateway counts {served:g} served requests; "
                         f"{through_gateway} were sent through it and completed")
    return out


def summary(levels: dict[str, list[dict[str, Any]]], idle_share: float) -> dict[str, Any]:
    """Added latency at concurrency 1, the best throughput of each path, and the
    gateway's CPU cost per request at its highest concurrency (with and without the
    share of a core its health checks take when idle)."""
    first = {p: levels[p][0] for p in PATHS}
    added = None
    if first["direct"]["concurrency"] == 1:
        d, g = first["direct"]["latency_s"], first["gateway"]["latency_s"]
        added = {"p50": g["p50"] - d["p50"], "p99": g["p99"] - d["p99"]}
    top = levels["gateway"][-1]
    n = max(top["completed"], 1)
    gw_cpu = top["cpu_s"]["gateway"] / n
    net = max(top["cpu_s"]["gateway"] - idle_share * top["wall_s"], 0.0) / n
    return {"levels": levels, "added_latency_s": added,
            "max_rps": {p: max(r["rps"] for r in levels[p]) for p in PATHS},
            "gateway_cpu_s_per_request": gw_cpu,
            "gateway_cpu_s_per_request_net_of_idle": net,
            "gateway_rps_per_core": 1.0 / gw_cpu if gw_cpu > 0 else None,
            "gateway_core_busy": top["cpu_s"]["gateway"] / top["wall_s"]}


def measure(cfg: Config, advance: Callable[[str, int], None] = lambda what, done: None
            ) -> dict[str, Any]:
    """Start the engine and the gateway, run the sweep, stop both (also on an error or
    Ctrl-C); the results, without the machine block."""
    from fluidgate.harness.run import Children

    async def run() -> dict[str, Any]:
        children = Children()
        with tempfile.TemporaryDirectory(prefix="fluidgate-gwbench-") as tmp:
            try:
                svc = await start(children, cfg, Path(tmp))
                results = await sweep(svc, cfg, advance)
            finally:
                await asyncio.shield(children.stop())
        return {"cores": svc.cores, "pids": svc.pids, "results": results}

    affinity = os.sched_getaffinity(0)
    try:
        return asyncio.run(run())
    finally:
        pin(os.getpid(), affinity)


# --- report ----------------------------------------------------------------------------------

def _ms(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds * 1e3:.2f}"


def tables(results: dict[str, Any]) -> list[Table]:
    out = []
    for mode in MODES:
        res = results[mode]
        t = Table(title=f"{mode}: per concurrency (latency ms; CPU µs per request)",
                  title_justify="left")
        for col in ("path", "at once", "requests", "req/s", "p50", "p99", "gateway",
                    "engine", "client"):
            t.add_column(col, justify="left" if col == "path" else "right")
        for path in PATHS:
            for r in res["levels"][path]:
                us = r["cpu_us_per_request"]
                t.add_row(path, str(r["concurrency"]), str(r["completed"]), f"{r['rps']:,.0f}",
                          _ms(r["latency_s"]["p50"]), _ms(r["latency_s"]["p99"]),
                          f"{us['gateway']:,.0f}", f"{us['engine']:,.0f}",
                          f"{us['client']:,.0f}")
        out.append(t)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="concurrency 1, 4, 16; fewer requests")
    ap.add_argument("--out", type=Path, default=None,
                    help="results JSON (default bench/results/gateway-<date>-<host>.json); an "
                         "existing file is kept unless --overwrite")
    ap.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    args = ap.parse_args(argv)
    cfg = QUICK if args.quick else Config()
    host = socket.gethostname().split(".")[0] or "dev"
    out_path: Path = args.out or ROOT / "bench/results" / f"gateway-{dt.date.today()}-{host}.json"
    refuse_existing(ap, out_path, args.overwrite)
    console = Console()
    if not console.is_terminal:  # a log file or a pipe: room for the tables
        console.width = max(console.width, 100)
    started = dt.datetime.now(dt.UTC)
    load_start = os.getloadavg()
    steps = len(MODES) * len(PATHS) * len(cfg.concurrency)
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=True) as progress:
            task = progress.add_task("starting the engine and the gateway", total=steps)
            measured = measure(cfg, lambda what, done: progress.update(
                task, description=what, completed=done))
    except BenchError as exc:
        console.print(f"[bold red]benchmark failed:[/] {exc}")
        return 1
    doc = {
        "schema": SCHEMA,
        "date": started.date().isoformat(),
        "started_utc": started.isoformat(timespec="seconds"),
        "seconds": round((dt.datetime.now(dt.UTC) - started).total_seconds(), 1),
        "machine": machine_info(),
        "loadavg_start": [round(v, 2) for v in load_start],
        "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        "config": {**asdict(cfg), "quick": args.quick, "time_scale": TIME_SCALE,
                   "max_batch": MAX_BATCH, "class": CLASS},
        "cores": measured["cores"],
        "results": measured["results"],
    }
    write_record(out_path, doc)
    for t in tables(doc["results"]):
        console.print(t)
    for mode in MODES:
        res = doc["results"][mode]
        added = res["added_latency_s"]
        console.print(f"{mode}: added latency p50 {_ms(added and added['p50'])} ms, "
                      f"p99 {_ms(added and added['p99'])} ms; best req/s direct "
                      f"{res['max_rps']['direct']:,.0f}, via the gateway "
                      f"{res['max_rps']['gateway']:,.0f}; gateway "
                      f"{res['gateway_rps_per_core'] or 0:,.0f} req/s per core of CPU")
    console.print(f"results written to {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
