"""fluidgate: service-level policy → fluid LP → optimal gate-and-route plan for LLM serving.

The package imports nothing heavy at import time; each stage lives in its own sub-package:
`sli_dsl` (language), `formulations` (Pyomo LP), `solvers` (HiGHS, Gurobi), `controllers`
(plans and specs), `calibration` (measure and fit), `simulator` (validation).
"""

__version__ = "0.1.0"
