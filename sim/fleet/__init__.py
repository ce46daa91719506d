"""Fleets: replicas of servers behind a router, with admission (the place for issue 18).

Empty for now. A request's path through a fleet will be: client -> router station (its own
service time and concurrency cap) -> routing decision (on the router's own counters or on
snapshots scraped at its interval) -> admission at the chosen replica (status codes) -> that
replica's server policy, all on one SimPy clock. This layer sits above :mod:`sim.servers` and
:mod:`sim.workload` and below :mod:`sim.simulation`.
"""
