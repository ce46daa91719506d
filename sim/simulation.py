"""Run a scenario: every server on the same workload, for every sweep value."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from sim.catalog import CatalogError, resolve_hardware, resolve_model
from sim.engines import EngineError, ResolvedServer, resolve_server
from sim.executor import Executor
from sim.fleet import ResolvedFleet, build_server, replica_rows, resolve_fleet, simulate_fleet
from sim.frontend import wrap_client
from sim.limits import check_size
from sim.llamaswap import resolve_swap_models, simulate_swap, swap_results
from sim.metrics import summarize
from sim.multimodel import load_gb_s, read_gb_s, resolve_models, scheduler_notes, simulate_models
from sim.recorder import Recorder
from sim.requests import Status
from sim.scenario import LlamaCppSpec, OllamaSpec, Scenario, ScenarioError, is_fleet, with_override
from sim.servers.base import IterationServer
from sim.servers.request_level import RequestLevelServer
from sim.servers.speculative import SpeculativePagedScheduler, SpeculativeSlotScheduler
from sim.workload import Workload, generate_workload, make_client
from sim.workload.table import INF

__all__ = ["PointResult", "resolve_servers", "run", "run_server", "scenario_workload", "sweep_scenarios"]


@dataclass
class PointResult:
    """One server at one sweep value: its metrics, raw records and configuration notes."""

    server: str
    engine: str
    sweep: dict[str, Any]
    metrics: dict[str, Any]
    recorder: Recorder = field(repr=False)
    notes: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """Flat dict: server, sweep value(s), every metric."""
        return {"server": self.server, "engine": self.engine, "sweep": self.sweep, **self.metrics}


def scenario_workload(scenario: Scenario) -> Workload:
    """The requests of a scenario: its workload spec drawn from its seed."""
    model = resolve_model(scenario.model, scenario.base_dir)
    return generate_workload(
        scenario.workload, scenario.seed, base_dir=scenario.base_dir,
        model_context_tokens=model.max_position_embeddings,
    )


def resolve_servers(scenario: Scenario) -> list[ResolvedServer]:
    """Policies and cost models of every server (raises ScenarioError naming the server, or when
    the run would need more memory than :func:`sim.limits.check_size` allows)."""
    model = resolve_model(scenario.model, scenario.base_dir)
    hardware = resolve_hardware(scenario.hardware)
    out = []
    for i, spec in enumerate(scenario.servers):
        try:
            if isinstance(spec, OllamaSpec) and spec.models:  # several models: each resolved (checked) alone
                out.append(resolve_models(spec, hardware)[0].resolved)
                continue
            if isinstance(spec, LlamaCppSpec) and spec.llama_swap is not None:  # llama-swap: likewise
                out.append(resolve_swap_models(spec, hardware)[0].resolved)
                continue
            out.append(resolve_fleet(spec, model, hardware) if is_fleet(spec) else resolve_server(spec, model, hardware))
        except (EngineError, CatalogError) as err:
            raise ScenarioError(f"servers.{i}: {err}") from None
    check_size(scenario, out)  # before anything the size of the run is allocated
    return out


def _build(resolved: ResolvedServer, workload: Workload, fast: bool, seed: int) -> IterationServer | RequestLevelServer:
    return build_server(resolved, len(workload), fast, seed)


def _spec_metrics(server: IterationServer | RequestLevelServer) -> dict[str, float]:
    """vLLM's speculative-decoding counters (``vllm:spec_decode_*``) of a speculating server."""
    scheduler = getattr(server, "scheduler", None)
    if not isinstance(scheduler, SpeculativePagedScheduler | SpeculativeSlotScheduler):
        return {}
    a = scheduler.acceptance
    out: dict[str, float] = {
        "spec_decode_num_drafts": a.num_drafts,
        "spec_decode_num_draft_tokens": a.num_draft_tokens,
        "spec_decode_num_accepted_tokens": a.num_accepted_tokens,
        "spec_decode_acceptance_length": a.acceptance_length,
        "spec_decode_draft_acceptance_rate": a.num_accepted_tokens / a.num_draft_tokens if a.num_draft_tokens else 0.0,
    }
    return out


StartHook = Callable[[IterationServer | RequestLevelServer, simpy.Environment, Any, Recorder], None]
"""Starts a built server's process (a timeline run records through its own; sim.results.timeline)."""


def _start(server: IterationServer | RequestLevelServer, env: simpy.Environment, client: Any, recorder: Recorder) -> None:
    server.start(env, client, recorder)


def simulate(
    scenario: Scenario, resolved: ResolvedServer, workload: Workload, *, fast: bool = True,
    counters: dict[str, float] | None = None, start: StartHook = _start,
) -> Recorder:
    """Replay ``workload`` through one server; returns its records (and fills ``counters`` with
    the server's speculative-decoding counters, if it speculates)."""
    env = simpy.Environment()
    recorder = Recorder(max(len(workload), 1))
    w = scenario.workload
    client = wrap_client(make_client(workload, w.num_requests, w.duration_s if w.duration_s else INF), resolved.frontend)
    server = _build(resolved, workload, fast, scenario.seed)
    start(server, env, client, recorder)
    env.run()
    recorder.trim()
    if counters is not None:
        counters.update(_spec_metrics(server))
    stuck = np.flatnonzero(recorder.status == Status.IN_FLIGHT)
    if stuck.size:  # nothing left to happen, yet requests inside: they can never be served
        i = int(stuck[0])
        raise ScenarioError(
            f"server {resolved.label!r}: {stuck.size} request(s) could never be served (the first: "
            f"{int(recorder.prompt_tokens[i])} prompt + {int(recorder.output_tokens[i])} output tokens); "
            "give the server more KV capacity or cap the request lengths"
        )
    return recorder


def _warmup(scenario: Scenario, arrived: int) -> int:
    w = scenario.workload.warmup_requests
    return w if w is not None else arrived // 10


def run_server(
    scenario: Scenario, index: int = 0, *, fast: bool = True, workload: Workload | None = None,
    sweep: dict[str, Any] | None = None, start: StartHook = _start,
) -> PointResult:
    """Run server ``index`` of the scenario (``start`` starts the built server: see simulate)."""
    resolved = resolve_servers(scenario)[index]
    workload = workload if workload is not None else scenario_workload(scenario)
    if isinstance(resolved, ResolvedFleet):
        return _run_fleet(scenario, resolved, workload, fast, sweep)
    spec = scenario.servers[index]
    if isinstance(spec, OllamaSpec) and spec.models:
        return _run_models(scenario, spec, resolved, workload, sweep or {})
    if isinstance(spec, LlamaCppSpec) and spec.llama_swap is not None:
        return _run_swap(scenario, spec, resolved, workload, sweep or {})
    counters: dict[str, float] = {}
    recorder = simulate(scenario, resolved, workload, fast=fast, counters=counters, start=start)
    slo = scenario.slo.model_dump() if scenario.slo else None
    metrics = {**summarize(recorder, _warmup(scenario, recorder.num_arrived), slo), **counters}
    notes = {**resolved.notes, "weight_format": resolved.weight_format}
    return PointResult(resolved.label, resolved.engine, sweep or {}, metrics, recorder, notes)


def _run_models(scenario: Scenario, spec: OllamaSpec, first: ResolvedServer, workload: Workload,
                sweep: dict[str, Any]) -> PointResult:
    """A multi-model Ollama server (sim.multimodel): overall metrics, per-model results in the notes."""
    w = scenario.workload
    client = wrap_client(make_client(workload, w.num_requests, w.duration_s if w.duration_s else INF), first.frontend)
    recorder, per_model, server = simulate_models(spec, resolve_hardware(scenario.hardware), client, len(workload),
                                                   scenario.seed)
    slo = scenario.slo.model_dump() if scenario.slo else None
    metrics = summarize(recorder, _warmup(scenario, recorder.num_arrived), slo)
    runners = server.runners
    metrics |= {"loads": sum(r.loads for r in runners), "evictions": sum(r.evictions for r in runners),
                "load_time_s": sum(r.load_time_s for r in runners)}
    notes = {**first.notes, "weight_format": first.weight_format, "models": per_model,
             "gpu_shared_s": server.gpu.busy_time_s,
             **scheduler_notes(spec, resolve_hardware(scenario.hardware)),
             "load": f"start-up {spec.startup_s} s + bytes / {load_gb_s(spec):g} GB/s ({spec.storage}, loader cap "
                      f"{spec.load_cap_gb_s:g} GB/s); VRAM recovery {spec.vram_recovery_s} s"}
    return PointResult(spec.label, "ollama", sweep, metrics, recorder, notes)


def _run_swap(scenario: Scenario, spec: LlamaCppSpec, first: ResolvedServer, workload: Workload,
              sweep: dict[str, Any]) -> PointResult:
    """llama-swap in front of llama-server (sim.llamaswap): overall metrics, per-model results in the notes."""
    w = scenario.workload
    assert spec.llama_swap is not None
    client = wrap_client(make_client(workload, w.num_requests, w.duration_s if w.duration_s else INF), first.frontend)
    recorder, server = simulate_swap(spec, resolve_hardware(scenario.hardware), client, len(workload), scenario.seed)
    slo = scenario.slo.model_dump() if scenario.slo else None
    metrics = summarize(recorder, _warmup(scenario, recorder.num_arrived), slo)
    metrics |= {"loads": sum(r.loads for r in server.runners), "evictions": sum(r.evictions for r in server.runners),
                "load_time_s": sum(r.load_time_s for r in server.runners), "swaps": server.swaps}
    swap = spec.llama_swap
    notes = {**first.notes, "weight_format": first.weight_format, "models": swap_results(server, recorder),
             "gpu_shared_s": server.gpu.busy_time_s,
             "load": f"llama-swap {swap.version} ({'FIFO router' if server.router else 'ProcessGroup'}): start-up "
                     f"{swap.startup_s} s + bytes / {read_gb_s(spec.label, swap.storage, swap.load_cap_gb_s):g} GB/s "
                     f"({swap.storage}), ready at the next health poll; {server.placement.describe()}"}
    return PointResult(spec.label, "llama-swap", sweep, metrics, recorder, notes)


def _run_fleet(
    scenario: Scenario, resolved: ResolvedFleet, workload: Workload, fast: bool, sweep: dict[str, Any] | None
) -> PointResult:
    w = scenario.workload
    try:
        fleet = simulate_fleet(resolved.members, resolved.router, workload, num_requests=w.num_requests,
                               duration_s=w.duration_s if w.duration_s else INF, seed=scenario.seed, fast=fast,
                               prefill=resolved.prefill, kv_transfer=resolved.kv_transfer,
                               kv_bytes_per_token=resolved.kv_bytes_per_token)
    except ValueError as err:
        raise ScenarioError(f"fleet {resolved.label!r}: {err}") from None
    warmup = _warmup(scenario, fleet.recorder.num_arrived)
    metrics = summarize(fleet.recorder, warmup, scenario.slo.model_dump() if scenario.slo else None)
    notes = {**resolved.notes, "router_decisions": fleet.decisions, "router_rejected": fleet.router_rejected,
             "attempts": fleet.attempts, "retries": fleet.attempts - fleet.recorder.num_arrived, "shed_429": fleet.shed,
             "sample_s": fleet.sample_s, "replica_rows": replica_rows(fleet, warmup), **fleet.pd}
    result = PointResult(resolved.label, resolved.engine, sweep or {}, metrics, fleet.recorder, notes)
    result.fleet = fleet  # type: ignore[attr-defined]
    return result


def sweep_scenarios(scenario: Scenario) -> Iterator[tuple[dict[str, Any], Scenario]]:
    """(sweep value, scenario with that value) for each point of the sweep (one if none)."""
    if scenario.sweep is None:
        yield {}, scenario
        return
    for point in scenario.sweep.points():
        sc = scenario
        for path, value in point.items():
            sc = with_override(sc, path, value)
        yield point, sc


def _point_task(task: tuple[Scenario, int, bool, dict[str, Any]]) -> PointResult:
    """One server at one sweep point (a task for an executor)."""
    sc, index, fast, point = task
    return run_server(sc, index, fast=fast, sweep=point)


def run(
    scenario: Scenario, *, fast: bool = True, progress: Callable[[str], None] | None = None,
    executor: Executor | None = None,
) -> list[PointResult]:
    """Every server at every sweep value, on common random numbers.

    With an ``executor`` (``sim.executor``: serial or Dask) every server at every point is one
    task; each draws its workload from the scenario's seed, so the results are the same."""
    if executor is not None:
        tasks = [(sc, i, fast, point) for point, sc in sweep_scenarios(scenario) for i in range(len(sc.servers))]
        return executor.map(_point_task, tasks, done=(lambda i, r: progress(f"{r.server} {r.sweep}")) if progress else None)
    results = []
    for point, sc in sweep_scenarios(scenario):
        resolve_servers(sc)  # refuse a bad or oversized point before drawing its workload
        workload = scenario_workload(sc)
        for i, spec in enumerate(sc.servers):
            results.append(run_server(sc, i, fast=fast, workload=workload, sweep=point))
            if progress:
                progress(f"{spec.label} {point}")
    return results
