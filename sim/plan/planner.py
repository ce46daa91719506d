"""``sim.plan(...)``: screen every candidate, simulate the promising ones, price the answers.

Candidates (server x hardware) are taken in order of their analytic cost floor (screen
capacity -> fewest replicas possible -> price). A candidate is simulated only if its floor is
at most ``(1 + screen_margin)`` x the cheapest plan among the candidates before it; the others
are reported as screened out with their analytic figures. Candidate searches run at once (up
to ``width``), each started as soon as the candidates before it bound the decision, so the
decisions, like the simulations (one task per seed of every load asked for), are the same
whatever runs them: a plan on a cluster equals the serial plan. Each result records how many
simulations it took.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim.catalog import CatalogError
from sim.catalog.power import PowerModel, power_model
from sim.catalog.pricing import owned_hourly, purchase_price, rental_price
from sim.executor import Executor, SerialExecutor, flatten, split
from sim.plan.replicas import REPLICA_MODEL, Job, Traffic, make_job, run_job, traffic_of
from sim.plan.schema import PlanSpec
from sim.plan.screen import Screen, screen
from sim.plan.search import Outcome, Verdict, judge, search
from sim.results.frames import frame
from sim.scenario import ScenarioError, ServerSpec
from sim.scenario.workload import ClosedLoopArrival
from sim.simulation import resolve_servers, scenario_workload

__all__ = ["CandidateResult", "PlanResult", "plan"]

REPORTED = ("output_throughput", "request_throughput", "p99_ttft_ms", "p99_tpot_ms", "p99_e2el_ms",
            "median_ttft_ms", "running_batch", "timeout_share")


@dataclass
class CandidateResult:
    """One candidate's answer."""

    name: str
    server: str
    engine: str
    hardware: str
    gpus_per_replica: int
    screen: Screen
    price: dict[str, Any]
    power: dict[str, Any]
    status: str = "screened out"
    """``planned``, ``infeasible`` or ``screened out``."""
    reason: str = ""
    outcome: Outcome | None = None
    simulations: int = 0
    figures: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """Flat JSON-able summary."""
        out: dict[str, Any] = {"candidate": self.name, "server": self.server, "engine": self.engine,
                               "hardware": self.hardware, "gpus_per_replica": self.gpus_per_replica,
                               "status": self.status, "reason": self.reason, "simulations": self.simulations,
                               "analytic_capacity_per_replica": self.screen.capacity,
                               "analytic_estimate_per_replica": self.screen.estimate,
                               "price": self.price, "power": self.power, **self.figures}
        o = self.outcome
        if o is not None and o.plan_point is not None:
            out["replicas"] = o.replicas
            out["max_load_per_replica"] = o.max_load
            out["bracket"] = list(o.bracket) if o.bracket else None
            out["at_plan"] = {"load_per_replica": o.plan_point.load, "means": o.plan_point.means,
                              "ci_half_width": o.plan_point.half_widths}
            if o.below is not None:
                out["one_fewer"] = {"load_per_replica": o.below.load, "means": o.below.means}
        return out


@dataclass
class PlanResult:
    """Every candidate, the cheapest plan and the Pareto front."""

    plan: PlanSpec
    traffic: Traffic
    candidates: list[CandidateResult]
    simulations: int
    replica_model: str = REPLICA_MODEL

    @property
    def planned(self) -> list[CandidateResult]:
        """Candidates with a replica count that meets the SLO."""
        return [c for c in self.candidates if c.status == "planned"]

    @property
    def cheapest(self) -> CandidateResult | None:
        """The plan with the lowest $/hour (ties: fewer replicas, then name)."""
        ok = self.planned
        return min(ok, key=lambda c: (c.figures["usd_per_hour"], c.figures["replicas"], c.name)) if ok else None

    def pareto(self) -> list[CandidateResult]:
        """Planned candidates no other beats on both $/hour and the tail latency."""
        metric = self.plan.search.pareto_metric
        pts = [(c.figures["usd_per_hour"], c.figures.get(metric, math.nan), c) for c in self.planned]
        front = [c for cost, lat, c in pts
                 if not any((o_cost <= cost and o_lat <= lat) and (o_cost < cost or o_lat < lat) for o_cost, o_lat, _ in pts)]
        return sorted(front, key=lambda c: c.figures["usd_per_hour"])

    def rows(self) -> list[dict[str, Any]]:
        """One flat dict per candidate: name, server, engine, hardware, GPUs per replica, status,
        reason, simulations, analytic capacity, price per GPU-hour and every figure."""
        return [{"candidate": c.name, "server": c.server, "engine": c.engine, "hardware": c.hardware,
                 "gpus_per_replica": c.gpus_per_replica, "status": c.status, "reason": c.reason,
                 "simulations": c.simulations, "analytic_capacity_per_replica": c.screen.capacity,
                 "usd_per_gpu_hour": c.price.get("usd_per_gpu_hour"), **c.figures} for c in self.candidates]

    def to_pandas(self) -> Any:
        """:meth:`rows` as a pandas DataFrame indexed by candidate (needs the ``pandas`` extra)."""
        return frame(self.rows()).set_index("candidate")

    def to_json(self) -> dict[str, Any]:
        """The whole result as JSON-able data."""
        cheapest = self.cheapest
        return {"plan": self.plan.model_dump(mode="json"), "replica_model": self.replica_model,
                "traffic": {"kind": self.traffic.kind, "target": self.traffic.target},
                "slo": self.plan.slo.bounds(), "simulations": self.simulations,
                "cheapest": cheapest.name if cheapest else None,
                "pareto_front": [c.name for c in self.pareto()],
                "candidates": [c.row() for c in self.candidates]}


def _power(plan: PlanSpec, hardware: str, gpus: int) -> PowerModel:
    given = plan.power.get(hardware)
    if given is not None:
        return PowerModel(hardware, given.idle_w, given.max_w, given.k, given.x0, "given", "the plan's power section")
    return power_model(hardware, gpus)


def _hourly(plan: PlanSpec, hardware: str, watts: float) -> tuple[float, dict[str, Any]]:
    """Dollars per device-hour at an average draw ``watts`` and where the price comes from."""
    p = plan.pricing
    given = p.overrides.get(hardware)
    if p.offering == "owned":
        assert p.years is not None and p.usd_per_kwh is not None and p.pue is not None
        if given is not None and given.usd_purchase is not None:
            buy, source = given.usd_purchase, "the plan's pricing.overrides"
        else:
            found = purchase_price(hardware)
            if found is None:
                raise CatalogError(f"no purchase price for hardware {hardware!r} in sim/catalog/prices/prices.csv; "
                                   "give one: pricing: {overrides: {" + hardware + ": {usd_purchase: 25000}}}")
            buy, source = found
        usd = owned_hourly(buy, p.years, watts, p.usd_per_kwh, p.pue)
        return usd, {"offering": "owned", "usd_purchase": buy, "years": p.years, "usd_per_kwh": p.usd_per_kwh,
                     "pue": p.pue, "watts": watts, "source": source}
    if given is not None and given.usd_per_gpu_hour is not None:
        return given.usd_per_gpu_hour, {"offering": p.offering, "provider": "given", "source": "the plan's pricing.overrides"}
    row = rental_price(hardware, p.offering, p.provider)
    return row.usd_per_gpu_hour, {"offering": row.offering, "provider": row.provider, "source": row.source,
                                  "date": row.date or "undated (catalog snapshot)", "credibility": row.credibility}


def _figures(plan: PlanSpec, traffic: Traffic, c: CandidateResult, pm: PowerModel) -> dict[str, Any]:
    o = c.outcome
    assert o is not None and o.plan_point is not None and o.replicas is not None and o.max_load is not None
    m = o.plan_point.means
    n, gpus = o.replicas, c.gpus_per_replica
    watts = pm.watts(m["running_batch"] / gpus) * gpus  # the fits are per GPU against its share of the batch
    per_gpu, price = _hourly(plan, c.hardware, watts / gpus)
    c.price = price | {"usd_per_gpu_hour": per_gpu}
    usd_h = n * gpus * per_gpu
    tok_s = n * m["output_throughput"]
    out = {"replicas": n, "usd_per_hour": usd_h,
           "usd_per_million_output_tokens": usd_h / (tok_s * 3600) * 1e6 if tok_s > 0 else math.inf,
           "output_tokens_per_s": tok_s, "watts_per_replica": watts, "fleet_kw": n * watts / 1000,
           "tokens_per_joule": m["output_throughput"] / watts if watts > 0 else math.nan,
           "headroom": n * o.max_load / traffic.target - 1}
    for name in set(REPORTED) | set(plan.slo.bounds()) | {plan.search.pareto_metric}:
        if name in m:
            out[name] = m[name]
    return out


@dataclass(frozen=True)
class Candidate:
    """One server on one hardware id at one TP size: a replica is ``tp`` GPUs."""

    name: str
    server: ServerSpec
    hardware: str
    """Catalog id of one GPU (prices and power are per GPU)."""
    tp: int = 1

    @property
    def node(self) -> str:
        """The replica's hardware as a scenario names it (``2x h100-sxm`` for TP 2)."""
        return self.hardware if self.tp == 1 else f"{self.tp}x {self.hardware}"


def _candidates(plan: PlanSpec) -> list[Candidate]:
    """Every server x hardware x TP size (TP > 1 for vLLM only: ``vllm-tp2@h100-sxm``)."""
    out = []
    for server in plan.candidates.servers:
        for hw in plan.candidates.hardware:
            for tp in plan.candidates.tensor_parallel:
                if tp == 1:
                    out.append(Candidate(f"{server.label}@{hw}", server, hw))
                elif getattr(server, "engine", None) == "vllm":
                    out.append(Candidate(f"{server.label}-tp{tp}@{hw}",
                                         server.model_copy(update={"tensor_parallel_size": tp}), hw, tp))
    return out


def plan(spec: PlanSpec, *, executor: Executor | None = None, width: int | None = None,
         progress: Callable[[str], None] | None = None) -> PlanResult:
    """Plan the cheapest fleet (see the module docstring). ``width``: most candidate searches
    at once (default: no limit; a search starts only when a serial run would run it too, so the
    plan and the number of simulations do not depend on it, and more at once keeps more
    workers busy)."""
    executor = executor or SerialExecutor()
    traffic = traffic_of(spec)
    bounds = spec.slo.bounds()
    s = spec.search
    sample = scenario_workload(make_job(spec, traffic, spec.candidates.servers[0], spec.candidates.hardware[0],
                                             traffic.per_replica(1), spec.seed).scenario)
    prompt, output = float(np.mean(sample.prompt_tokens)), float(np.mean(sample.output_tokens))
    arrival = spec.traffic.workload.arrival
    closed = isinstance(arrival, ClosedLoopArrival)
    think = 0.0
    if isinstance(arrival, ClosedLoopArrival):
        think = arrival.think_time.mean_s if arrival.think_time else arrival.think_time_s
    results: list[CandidateResult] = []
    floors: dict[str, float] = {}
    for cand in _candidates(spec):
        name, hw = cand.name, cand.hardware
        job = make_job(spec, traffic, cand.server, cand.node, traffic.per_replica(1), spec.seed)
        try:
            resolved = resolve_servers(job.scenario)[0]
            pm = _power(spec, hw, cand.tp)
            per_gpu, price = _hourly(spec, hw, pm.watts(0))
        except (ScenarioError, CatalogError) as err:
            raise ScenarioError(f"candidates {name}: {err}") from None
        sc = screen(resolved, prompt, output, bounds, closed, think)
        r = CandidateResult(name, cand.server.label, resolved.engine, hw, cand.tp, sc, price | {"usd_per_gpu_hour": per_gpu}, {
            "basis": pm.basis, "source": pm.source, "idle_w": pm.idle_w, "max_w": pm.max_w, "k": pm.k, "x0": pm.x0})
        n_floor = min(max(math.ceil(traffic.target / sc.capacity), spec.candidates.replicas.min),
                      spec.candidates.replicas.max)
        floors[name] = n_floor * per_gpu * cand.tp
        r.figures["analytic_floor_usd_per_hour"] = floors[name]
        if sc.reason:
            r.status, r.reason = "infeasible", f"analytic: {sc.reason}"
        results.append(r)
    order = sorted((r for r in results if not r.reason), key=lambda r: (floors[r.name], r.name))
    powers = {r.name: _power(spec, r.hardware, r.gpus_per_replica) for r in order}
    by_name = {c.name: (c.server, c.node) for c in _candidates(spec)}
    cache: dict[tuple[str, float], Verdict] = {}
    total = 0
    queue = list(order)
    active: dict[str, Any] = {}
    asks: dict[str, list[float]] = {}
    cost: dict[str, float] = {}  # finished candidates: $/h of their plan (inf if infeasible)

    def decide(i: int) -> bool | None:
        """Simulate the i-th candidate of ``order``? The answer a serial run gives (every earlier
        candidate finished), decided as soon as the earlier ones bound it: None until then."""
        r, limit = order[i], 1 + s.screen_margin
        earlier = [c.name for c in order[:i]]
        upper = min((cost[n] for n in earlier if n in cost), default=math.inf)
        lower = min((cost.get(n, floors[n]) for n in earlier), default=math.inf)
        if floors[r.name] <= limit * lower:
            return True
        if floors[r.name] > limit * upper:
            return False
        return None

    limit = len(order) if width is None else max(width, 1)

    def start_more() -> None:
        for r in list(queue):
            if len(active) >= limit:
                return
            verdict = decide(order.index(r))
            if verdict is None:
                continue
            queue.remove(r)
            if verdict:
                gen = search(r.screen.estimate, traffic.target, traffic.per_replica, closed, s.rel_tol,
                             spec.candidates.replicas.min, spec.candidates.replicas.max)
                active[r.name] = (r, gen)
                asks[r.name] = next(gen)

    start_more()
    while active:
        wanted = [(n, x) for n, xs in asks.items() for x in xs if (n, x) not in cache]
        wanted = list(dict.fromkeys(wanted))
        jobs: list[list[Job]] = [[make_job(spec, traffic, *by_name[n], x, spec.seed + k) for k in range(s.seeds)]
                                 for n, x in wanted]
        flat, sizes = flatten(jobs)
        runs = split(executor.map(run_job, flat), sizes)
        total += len(flat)
        for (n, x), group in zip(wanted, runs, strict=True):
            cache[(n, x)] = judge(x, group, bounds, s.confidence, REPORTED)
            active[n][0].simulations += len(group)
            if progress:
                progress(f"{n}: load {x:.4g} per replica -> {'meets' if cache[(n, x)].passed else 'breaks'} the SLO")
        for n in list(asks):
            r, gen = active[n]
            try:
                asks[n] = gen.send({x: cache[(n, x)] for x in asks[n]})
            except StopIteration as stop:
                outcome: Outcome = stop.value
                r.outcome = outcome
                del active[n], asks[n]
                if outcome.feasible:
                    r.status, r.reason = "planned", ""
                    r.figures.update(_figures(spec, traffic, r, powers[n]))
                    cost[n] = r.figures["usd_per_hour"]
                else:
                    r.status, r.reason = "infeasible", outcome.reason
                    cost[n] = math.inf
        start_more()
    for i, r in enumerate(order):  # the reason, once every candidate before it is known
        if r.status == "screened out":
            upper = min((cost.get(c.name, math.inf) for c in order[:i]), default=math.inf)
            r.reason = (f"analytic cost floor ${floors[r.name]:.2f}/h above (1 + {s.screen_margin:g}) x "
                        f"the cheapest plan before it (${upper:.2f}/h)")
    return PlanResult(spec, traffic, results, total)
