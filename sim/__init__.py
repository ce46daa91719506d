"""servesim: a discrete-event simulator of LLM serving architectures.

The public Python API (the import package is ``sim``; the distribution and the command are
``servesim``). Scripts and notebooks use these names only::

    >>> import sim
    >>> scenario = sim.load_scenario("scenarios/seed_benchmark.yaml")  # doctest: +SKIP
    >>> scenario = sim.with_override(scenario, "workload.arrival.users", 8)  # doctest: +SKIP
    >>> results = sim.run(scenario)  # one PointResult per server and sweep value  # doctest: +SKIP
    >>> results[0].metrics["output_throughput"]  # doctest: +SKIP

``sim.plan(sim.load_plan("plan.yaml"))`` finds the cheapest fleet that meets an SLO
(``sim.plan`` is also the package of the planner); ``sim.plot_metric`` / ``sim.save_standard_plots`` draw results; ``sim.get_model``,
``sim.get_hardware`` and ``sim.get_format`` read the catalog. The layers behind these names are
described in ``docs/architecture.md``.

``sim.CORE`` says whether the hot modules run compiled (mypyc) or as pure Python (see
``sim/_core.py``); results are the same either way.
"""

from sim import _core

__version__ = "0.1.0"
"""servesim's version (pyproject.toml's); part of every saved point's cache key."""

CORE = _core.select()
"""Which core this process runs (decided before the hot modules are imported)."""

# (the core must be chosen before the modules below are imported)

from sim.catalog import get_format, get_hardware, get_model
from sim.costs import ConstantStepCost, DecodeLine, LinearStepCost, RooflineStepCost, StepCost
from sim.metrics import summarize
from sim.plan import PlanResult, PlanSpec, load_plan, plan
from sim.scenario import Scenario, ScenarioError, load_scenario, parse_scenario, with_override
from sim.shapes import BatchShape
from sim.simulation import PointResult, run, run_server, scenario_workload
from sim.workload import Workload, generate_workload

__all__ = [
    "CORE",
    "BatchShape",
    "ConstantStepCost",
    "DecodeLine",
    "LinearStepCost",
    "PlanResult",
    "PlanSpec",
    "PointResult",
    "RooflineStepCost",
    "Scenario",
    "ScenarioError",
    "StepCost",
    "Workload",
    "generate_workload",
    "get_format",
    "get_hardware",
    "get_model",
    "load_plan",
    "load_scenario",
    "parse_scenario",
    "plan",
    "plot_metric",
    "run",
    "run_server",
    "save_standard_plots",
    "scenario_workload",
    "summarize",
    "with_override",
]


def __getattr__(name: str) -> object:
    """The plot helpers, imported on first use (matplotlib is not needed to run a scenario)."""
    if name in ("plot_metric", "save_standard_plots"):
        from sim.results import plots

        return getattr(plots, name)
    raise AttributeError(f"module 'sim' has no attribute {name!r}")
