"""What the harness tests share: the reference policy solved into a spec at two GPUs."""

from __future__ import annotations

from pathlib import Path

from fluidgate.controllers.spec import ControllerSpec, load_spec
from fluidgate.simulator.config import spec_at


def two_gpu_spec(folder: Path) -> ControllerSpec:
    """`examples/two_class.sli` solved through the CLI (as a user gets it), scaled to 2 GPUs."""
    from typer.testing import CliRunner

    from fluidgate.cli import app

    out = folder / "spec.json"
    res = CliRunner().invoke(app, ["solve", "examples/two_class.sli", "--controller", str(out)])
    assert res.exit_code == 0, res.output
    return spec_at(load_spec(out), 2)
