"""Hand-built controller specs for the exporter tests (until `build_spec` writes them).

The reference spec is DESIGN §2's instance at n = 500 (bundled, solo-first); the others are
edited copies whose priority ranks, gate, router or pools are known by construction.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from fluidgate.controllers.spec import ControllerSpec, parse_spec

SPECS = Path(__file__).resolve().parent / "fixtures" / "specs"
REFERENCE_SPEC = SPECS / "reference.controller.json"


def reference_raw() -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(REFERENCE_SPEC.read_text(encoding="utf-8"))
    return raw


def spec_of(raw: dict[str, Any]) -> ControllerSpec:
    return parse_spec(json.dumps(raw), origin="test")


def three_classes(ranks: tuple[int, int, int] = (3, 1, 2), **top: Any) -> dict[str, Any]:
    """The reference with a third class; class names a, b, c get `ranks` in that order (and
    the default classification: the reference's rules name its own classes)."""
    raw = reference_raw()
    base = raw["classes"][1]
    classes = []
    for name, rank in zip("abc", ranks, strict=True):
        c = copy.deepcopy(base)
        c["name"], c["priority"] = name, rank
        classes.append(c)
    raw["classes"] = classes
    del raw["classification"]
    raw.update(top)
    return raw


def without_solo_pool() -> dict[str, Any]:
    raw = reference_raw()
    cl = raw["cluster"]
    cl["mixed_gpus"], cl["solo_gpus"] = cl["gpus"], 0
    for c in raw["classes"]:
        c["targets"]["decodes_solo"] = 0.0
        c["p_solo"] = 0.0
    return raw
