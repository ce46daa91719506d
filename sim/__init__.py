"""servesim: a discrete-event simulator of LLM serving architectures.

The public Python API (the import package is ``sim``; the distribution and the command are
``servesim``). Scripts and notebooks use these names only::

    >>> import sim
    >>> scenario = sim.load_scenario("scenarios/seed_benchmark.yaml")  # doctest: +SKIP
    >>> scenario = sim.with_override(scenario, "workload.arrival.users", 8)  # doctest: +SKIP
    >>> results = sim.run(scenario)  # one PointResult per server and sweep value  # doctest: +SKIP
    >>> results[0].metrics["output_throughput"]  # doctest: +SKIP
    >>> results.to_pandas()  # a DataFrame, a row per point (needs the pandas extra)  # doctest: +SKIP

``sim.plan(sim.load_plan("plan.yaml"))`` finds the cheapest fleet that meets an SLO
(``sim.plan`` is also the package of the planner); ``sim.plot_metric`` / ``sim.save_standard_plots``
draw results; ``sim.record_timeline`` records every pass and request of a run
(``sim.write_trace`` writes it for Perfetto; ``sim.plot_gantt``, ``sim.plot_batch_and_step_time``,
``sim.plot_kv_occupancy`` and ``sim.plot_step_time_vs_batch`` draw it); ``sim.get_model``,
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
from sim import simulation as _simulation
from sim.plan import PlanResult, PlanSpec, load_plan, plan
from sim.results.frames import RunResults
from sim.scenario import Scenario, ScenarioError, load_scenario, parse_scenario, with_override
from sim.shapes import BatchShape
from sim.simulation import PointResult, run_server, scenario_workload
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
    "RunResults",
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
    "plot_batch_and_step_time",
    "plot_gantt",
    "plot_kv_occupancy",
    "plot_metric",
    "plot_step_time_vs_batch",
    "record_timeline",
    "run",
    "run_server",
    "save_standard_plots",
    "scenario_workload",
    "summarize",
    "with_override",
    "write_trace",
]

_TIMELINE = {"record_timeline": "timeline", "write_trace": "perfetto", "plot_gantt": "timeline_plots",
             "plot_batch_and_step_time": "timeline_plots", "plot_kv_occupancy": "timeline_plots",
             "plot_step_time_vs_batch": "timeline_plots"}


def run(scenario: Scenario, **options: object) -> RunResults:
    """Every server of ``scenario`` at every sweep value (``sim.simulation.run``; options
    ``fast``, ``progress``, ``executor``): a list of ``PointResult`` with ``.rows()`` and
    ``.to_pandas()`` (one row per point, a column per swept field and metric)."""
    return RunResults(_simulation.run(scenario, **options))  # type: ignore[arg-type]


def __getattr__(name: str) -> object:
    """The plot helpers, imported on first use (matplotlib is not needed to run a scenario)."""
    if name in ("plot_metric", "save_standard_plots"):
        from sim.results import plots

        return getattr(plots, name)
    if name in _TIMELINE:  # (sim.results.timeline*: imported on first use too)
        import importlib

        return getattr(importlib.import_module(f"sim.results.{_TIMELINE[name]}"), name)
    raise AttributeError(f"module 'sim' has no attribute {name!r}")
