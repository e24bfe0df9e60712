"""What the harness tests share: the reference policy solved into a spec at two GPUs, and
the live processes a run left behind."""

from __future__ import annotations

import os
from pathlib import Path

from fluidgate.controllers.spec import ControllerSpec, load_spec
from fluidgate.simulator.config import spec_at
from tests.fake_engines import alive


def two_gpu_spec(folder: Path) -> ControllerSpec:
    """`examples/two_class.sli` solved through the CLI (as a user gets it), scaled to 2 GPUs."""
    from typer.testing import CliRunner

    from fluidgate.cli import app

    out = folder / "spec.json"
    res = CliRunner().invoke(app, ["solve", "examples/two_class.sli", "--controller", str(out)])
    assert res.exit_code == 0, res.output
    return spec_at(load_spec(out), 2)


def processes_mentioning(text: str) -> list[int]:
    """Live (not zombie) processes but this one whose command line names `text` (a run's
    own directory, which its gateway's and engines' arguments name)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if text.encode() in cmd and alive(int(entry)):
            found.append(int(entry))
    return found
