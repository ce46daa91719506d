"""servesim: a discrete-event simulator of LLM serving architectures.

>>> from sim import load_scenario, run
>>> results = run(load_scenario("scenarios/seed_benchmark.yaml"))  # doctest: +SKIP

``sim.CORE`` says whether the hot modules run compiled (mypyc) or as pure Python (see
``sim/_core.py``); results are the same either way.
"""

from sim import _core

CORE = _core.select()
"""Which core this process runs (decided before the hot modules are imported)."""

# (the core must be chosen before the modules below are imported)

from sim.costs import ConstantStepCost, DecodeLine, LinearStepCost, RooflineStepCost, StepCost
from sim.metrics import summarize
from sim.scenario import Scenario, ScenarioError, load_scenario, parse_scenario, with_override
from sim.shapes import BatchShape
from sim.simulation import PointResult, run, run_server
from sim.workload import Workload, generate_workload

__all__ = [
    "CORE",
    "BatchShape",
    "ConstantStepCost",
    "DecodeLine",
    "LinearStepCost",
    "PointResult",
    "RooflineStepCost",
    "Scenario",
    "ScenarioError",
    "StepCost",
    "Workload",
    "generate_workload",
    "load_scenario",
    "parse_scenario",
    "run",
    "run_server",
    "summarize",
    "with_override",
]
