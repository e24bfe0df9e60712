"""The `json` and `yaml` targets: the controller spec itself, for tools that read either.

The YAML form holds exactly the JSON document's values (PyYAML `safe_dump`, keys in the
spec's order), so converting it back to JSON gives a spec that parses to the same model.
"""

from __future__ import annotations

from fluidgate.controllers.export.base import ExportResult, Target
from fluidgate.controllers.spec import SCHEMA_ID, ControllerSpec, dump_spec


def export_json(spec: ControllerSpec) -> ExportResult:
    return ExportResult(Target.JSON, SCHEMA_ID, {"controller.json": dump_spec(spec)})


def export_yaml(spec: ControllerSpec) -> ExportResult:
    import yaml

    payload = spec.model_dump(mode="json", by_alias=True)
    text = yaml.safe_dump(payload, sort_keys=False, allow_unicode=True, width=100)
    return ExportResult(Target.YAML, SCHEMA_ID, {"controller.yaml": text})
