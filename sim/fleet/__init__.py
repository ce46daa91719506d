"""Fleets: replicas of servers behind a router, with admission (issue 18).

A request's path through a fleet: client -> router station (its own service time and
concurrency cap, :class:`~sim.fleet.dispatch.Station`) -> routing decision
(:mod:`sim.fleet.routers`, on the router's own counters or on snapshots scraped at its
interval) -> admission at the chosen replica -> that replica's server policy, all on one SimPy
clock (:mod:`sim.fleet.dispatch`). This layer sits above :mod:`sim.servers` and
:mod:`sim.workload` and below :mod:`sim.simulation`.
"""

from sim.fleet.build import build_server
from sim.fleet.resolve import ResolvedFleet, resolve_fleet
from sim.fleet.run import FleetRun, replica_rows, simulate_fleet

__all__ = ["FleetRun", "ResolvedFleet", "build_server", "replica_rows", "resolve_fleet", "simulate_fleet"]
