"""Which exporter serves which `--target`: the one table the command and the docs read."""

from __future__ import annotations

from collections.abc import Callable

from fluidgate.controllers.export.base import ExportResult, Target
from fluidgate.controllers.spec import ControllerSpec

Exporter = Callable[[ControllerSpec], ExportResult]


def exporter(target: Target) -> Exporter:
    """The export function for `target`; modules load only when their target is asked for."""
    if target is Target.VLLM:
        from fluidgate.controllers.export import vllm

        return vllm.export
    if target is Target.SGLANG:
        from fluidgate.controllers.export import sglang

        return sglang.export
    if target is Target.DYNAMO:
        from fluidgate.controllers.export import dynamo

        return dynamo.export
    if target is Target.LLMD:
        from fluidgate.controllers.export import llmd

        return llmd.export
    from fluidgate.controllers.export import document

    return document.export_json if target is Target.JSON else document.export_yaml


def parse_target(name: str) -> Target | None:
    try:
        return Target(name.strip().lower())
    except ValueError:
        return None


def target_names() -> list[str]:
    return [t.value for t in Target]


def export_spec(spec: ControllerSpec, target: Target) -> ExportResult:
    return exporter(target)(spec)
