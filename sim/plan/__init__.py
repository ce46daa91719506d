"""Capacity planning: the cheapest fleet that carries some traffic within an SLO.

* :mod:`sim.plan.schema` -- the plan file (traffic, SLO, candidates, pricing, search);
* :mod:`sim.plan.replicas` -- the replica model (random-split replicas until fleets land) and
  the simulation task;
* :mod:`sim.plan.screen` -- the analytic screen (capacity, M/M/c estimate) from the cost model;
* :mod:`sim.plan.search` -- one candidate's bisection and minimal replica count;
* :mod:`sim.plan.planner` -- :func:`plan`: screening, scheduling the searches on an executor,
  prices, energy, the cheapest plan and the Pareto front.

    >>> import sim
    >>> result = sim.plan(sim.load_plan("plans/chat_small.yaml"))  # doctest: +SKIP
    >>> result.cheapest.figures["replicas"], result.cheapest.figures["usd_per_hour"]  # doctest: +SKIP
"""

from __future__ import annotations

from sim.plan.planner import CandidateResult, PlanResult, plan
from sim.plan.schema import PlanSpec, load_plan, parse_plan

__all__ = ["CandidateResult", "PlanResult", "PlanSpec", "load_plan", "parse_plan", "plan"]
