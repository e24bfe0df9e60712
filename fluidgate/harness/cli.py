"""`fluidgate engine|gateway|load|harness`: the validation harness on the command line.

The commands need aiohttp and prometheus_client (the `[harness]` extra); without them they
say how to install them and exit 2. Importing this module stays cheap: the services and
their libraries are imported inside the commands.
"""

from __future__ import annotations

import math
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from fluidgate.harness.timing import EngineTiming

EXIT_INPUT = 2
INSTALL_HINT = ("error: the harness needs aiohttp and prometheus_client; install them with "
                "pip install -e '.[harness]' in the fluidgate checkout")


class Role(StrEnum):
    MIXED = "mixed"
    SOLO = "solo"


def fail(message: str, code: int = EXIT_INPUT) -> NoReturn:
    from fluidgate.textsafe import safe_text

    Console(stderr=True, highlight=False, soft_wrap=True).print(
        safe_text(message, multiline=True), markup=False)
    raise typer.Exit(code)


def need_libraries() -> None:
    try:
        import aiohttp  # noqa: F401
        import prometheus_client  # noqa: F401
    except ImportError:
        fail(INSTALL_HINT)


def positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        fail(f"error: {name} must be a positive number, not {value}")


def _timing(spec_file: Path | None, policy_file: Path | None) -> EngineTiming:
    from fluidgate.harness.timing import timing_from_cluster, timing_from_spec

    if (spec_file is None) == (policy_file is None):
        fail("error: give the timing with exactly one of --spec SPEC.json or --policy P.sli")
    try:
        if spec_file is not None:
            from fluidgate.controllers.spec import SpecError, load_spec

            try:
                return timing_from_spec(load_spec(spec_file))
            except SpecError as exc:
                fail(f"error: {exc}")
        from fluidgate.diagnostics import PolicyError
        from fluidgate.sli_dsl.loader import load_policy

        assert policy_file is not None
        try:
            return timing_from_cluster(load_policy(policy_file).policy.cluster)
        except PolicyError as exc:
            fail(exc.render())
    except ValueError as exc:
        fail(f"error: {exc}")


def engine(
    role: Annotated[Role, typer.Option(help="mixed: prefills and decodes (one prefill slot, "
                                       "B − 1 decode slots); solo: decodes only (B slots).")],
    port: Annotated[int, typer.Option(help="Loopback port; 0 picks a free one (printed as "
                                      "'listening http://127.0.0.1:PORT').")] = 0,
    spec: Annotated[Path | None, typer.Option(
        help="Time iterations by this controller spec's curves (B, C, τ_mix, τ_solo).",
        show_default=False)] = None,
    policy: Annotated[Path | None, typer.Option(
        help="Time iterations by this policy's cluster block (inline or calibrated).",
        show_default=False)] = None,
    time_scale: Annotated[float, typer.Option(help="Model seconds per wall second (10: ten "
                                              "times faster than real).")] = 1.0,
    stream_interval: Annotated[int, typer.Option(help="Tokens per streamed chunk after the "
                                                 "first (as vLLM's --stream-interval).")] = 1,
) -> None:
    """Run an emulated OpenAI-compatible engine whose iterations follow the calibrated τ.

    Continuous batching with at most B streams and a prefill chunk of C tokens per mixed
    iteration; speaks vLLM's two-step disaggregated protocol (kv_transfer_params). Stops on
    Ctrl-C or SIGTERM. Exit 2 on a bad option, a bad file or a port already taken.
    """
    need_libraries()
    positive("--time-scale", time_scale)
    if stream_interval < 1:
        fail(f"error: --stream-interval must be at least 1, not {stream_interval}")
    timing = _timing(spec, policy)
    from fluidgate.harness.core import EngineCore
    from fluidgate.harness.engine import EngineServer
    from fluidgate.harness.serve import PortError, serve_forever

    core = EngineCore(timing, role is Role.MIXED, time_scale, stream_interval)
    try:
        serve_forever(EngineServer(core, f"{role.value}-{port}").app(), port)
    except PortError as exc:
        fail(f"error: {exc}")


def mount(app: typer.Typer) -> None:
    """Add the harness commands to the main application (idempotent)."""
    if any(c.name == "engine" for c in app.registered_commands):
        return
    app.command(name="engine")(engine)
