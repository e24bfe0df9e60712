"""Specs for the simulator's tests: the solved reference instance, and small hand-made ones."""

from __future__ import annotations

from functools import cache

from fluidgate.controllers.spec import ControllerSpec, RouterRule
from tests.conftest import EXAMPLES
from tests.controller_specs import Cls, make_spec


@cache
def reference_spec() -> ControllerSpec:
    """The bundled reference instance (DESIGN.md §2), solved and turned into a spec."""
    from fluidgate.controllers.build import build_spec
    from fluidgate.pipeline import solve_policy
    from fluidgate.sli_dsl.loader import load_policy

    path = EXAMPLES / "two_class.sli"
    return build_spec(solve_policy(load_policy(path).policy), path)


def one_gpu_spec(rate: float, patience: float | None, prompt: float, output: float,
                 router: RouterRule = RouterRule.SOLO_FIRST, p_solo: float = 1.0
                 ) -> ControllerSpec:
    """One class on one GPU that keeps its prefill slot (mixed): a single-server queue."""
    base = make_spec([Cls(prefill=0.5, prompt=prompt, output=output, p_solo=p_solo)],
                     router=router, gpus=1, mixed=1)
    cls = base.classes[0].model_copy(update={"rate": rate, "patience": patience})
    return base.model_copy(update={"classes": [cls]})
