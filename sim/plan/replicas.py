"""The replica model of a plan and the simulation task it runs.

**Random-split replicas** (until fleets land in ``sim.fleet``): N replicas of one server behind
a router that sends each request to a replica chosen uniformly at random are N independent
copies of that server, each fed 1/N of the traffic; for Poisson arrivals this is exact (the
split of a Poisson stream of rate lambda is N independent Poisson streams of rate lambda/N), and
pooled over replicas the latency distribution is each replica's. So one simulation of one
replica at the per-replica load answers for the fleet:

* ``poisson``: the replica sees Poisson arrivals at rate lambda/N;
* ``trace``: each request of the trace (sped up by the growth factor) is kept with probability
  1/N (the requests one replica of a random router receives); loads above the whole trace's
  rate speed the trace up instead;
* ``closed_loop``: users are pinned to replicas (sticky sessions), ceil(U/N) per replica, the
  busiest replica standing for all.

A real fleet (router policies, admission) plugs in here: :func:`make_job` builds what one
simulation needs and :func:`run_job` runs it, so a fleet model only changes these two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim.plan.schema import PlanSpec
from sim.scenario import Scenario, ServerSpec, SloSpec
from sim.scenario.workload import ClosedLoopArrival, PoissonArrival, TraceArrival
from sim.simulation import run_server, scenario_workload
from sim.workload import Workload

__all__ = ["REPLICA_MODEL", "Job", "Traffic", "make_job", "run_job", "traffic_of"]

REPLICA_MODEL = "random-split replicas (N independent servers at 1/N of the traffic; exact for Poisson)"


@dataclass(frozen=True)
class Traffic:
    """The fleet's target load in the unit the search moves (req/s, or users)."""

    kind: str
    """``rate`` (open loop) or ``users`` (closed loop)."""
    target: float
    """Load the fleet must carry (growth applied)."""
    trace_rate: float = 0.0
    """Trace: its own mean rate before growth (requests per second)."""

    def per_replica(self, replicas: int) -> float:
        """Load one replica carries when ``replicas`` share the target."""
        if self.kind == "users":
            return float(math.ceil(self.target / replicas))
        return self.target / replicas


@dataclass(frozen=True)
class Job:
    """One simulation: one replica at one load for one seed."""

    scenario: Scenario
    keep: float = 1.0
    """Probability that each request is kept (a random router's share of a trace)."""


def traffic_of(plan: PlanSpec) -> Traffic:
    """The target load of a plan."""
    arrival = plan.traffic.workload.arrival
    growth = plan.traffic.growth
    if isinstance(arrival, PoissonArrival):
        return Traffic("rate", arrival.rate_per_s * growth)
    if isinstance(arrival, ClosedLoopArrival):
        return Traffic("users", float(math.ceil(arrival.users * growth)))
    assert isinstance(arrival, TraceArrival)
    workload = scenario_workload(_scenario(plan, plan.candidates.servers[0], plan.candidates.hardware[0], plan.seed,
                                           plan.traffic.workload))
    assert workload.arrival_s is not None
    span = float(np.max(workload.arrival_s) - np.min(workload.arrival_s))
    rate = (len(workload) - 1) / span if span > 0 else float(len(workload))
    return Traffic("rate", rate * growth, trace_rate=rate)


def _scenario(plan: PlanSpec, server: ServerSpec, hardware: str, seed: int, workload: Any) -> Scenario:
    good = plan.slo.goodput
    slo = SloSpec(ttft_ms=good.ttft_ms, tpot_ms=good.tpot_ms, e2el_ms=good.e2el_ms) if good else None
    return Scenario(name=plan.name, seed=seed, model=plan.model, hardware=hardware, workload=workload,
                    servers=[server], slo=slo, base_dir=plan.base_dir)


def make_job(plan: PlanSpec, traffic: Traffic, server: ServerSpec, hardware: str, load: float, seed: int) -> Job:
    """The simulation of one replica carrying ``load`` (req/s or users) with ``seed``."""
    w = plan.traffic.workload
    arrival = w.arrival
    keep = 1.0
    if isinstance(arrival, PoissonArrival):
        w = w.model_copy(update={"arrival": arrival.model_copy(update={"rate_per_s": load})})
    elif isinstance(arrival, ClosedLoopArrival):
        w = w.model_copy(update={"arrival": arrival.model_copy(update={"users": int(load)})})
    else:
        assert isinstance(arrival, TraceArrival)
        share = load / traffic.target
        keep = min(share, 1.0)
        speedup = arrival.speedup * plan.traffic.growth * max(share, 1.0)
        warmup = None if w.warmup_requests is None else int(w.warmup_requests * keep)
        w = w.model_copy(update={"arrival": arrival.model_copy(update={"speedup": speedup}),
                                 "warmup_requests": warmup})
    return Job(_scenario(plan, server, hardware, seed, w), keep)


def _thin(workload: Workload, keep: float, seed: int) -> Workload:
    """The requests a random router sends one replica: each kept with probability ``keep``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E1EC7]))
    mask = rng.random(len(workload)) < keep
    if not mask.any():
        mask[0] = True
    hashes = None if workload.block_hashes is None else tuple(
        h for h, m in zip(workload.block_hashes, mask, strict=True) if m)
    assert workload.arrival_s is not None
    return Workload(workload.prompt_tokens[mask], workload.output_tokens[mask], workload.arrival_s[mask],
                    None if workload.think_s is None else workload.think_s[mask], workload.users,
                    workload.ramp_up_s, workload.timeout_s, hashes, workload.hash_block_tokens, workload.turns)


_TRACES: dict[str, Workload] = {}
"""Trace workloads already read in this process (a plan asks for the same trace many times)."""


def _workload(sc: Scenario) -> Workload:
    """The scenario's workload; a trace's is read once per process (the columns are only read)."""
    if not isinstance(sc.workload.arrival, TraceArrival):
        return scenario_workload(sc)
    key = "|".join((sc.workload.model_dump_json(), str(sc.seed), sc.base_dir,
                    sc.model if isinstance(sc.model, str) else sc.model.model_dump_json()))
    if key not in _TRACES:
        if len(_TRACES) >= 4:
            _TRACES.pop(next(iter(_TRACES)))
        _TRACES[key] = scenario_workload(sc)
    return _TRACES[key]


def run_job(job: Job) -> dict[str, Any]:
    """Simulate one job: its metrics plus the shares and the running batch the plan uses."""
    sc = job.scenario
    workload = _workload(sc)
    if job.keep < 1.0:
        workload = _thin(workload, job.keep, sc.seed)
    m = dict(run_server(sc, 0, workload=workload).metrics)
    counted = max(m["counted"], 1)
    m["timeout_share"] = m["timeouts"] / counted
    m["rejection_share"] = m["rejected"] / counted
    if "request_goodput" in m:
        m["bad_share"] = max(0.0, 1.0 - m["request_goodput"] * m["duration"] / counted)
    decode_ms = m["mean_e2el_ms"] - m["mean_ttft_ms"]
    # Little's law on the decode phase: requests decoding at once
    m["running_batch"] = m["request_throughput"] * decode_ms / 1e3 if math.isfinite(decode_ms) else 0.0
    return m
