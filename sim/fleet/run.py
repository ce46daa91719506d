"""Run a fleet: replicas built from their resolved specs, the router, a sampler of replica state,
and the per-replica rows a capacity planner reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from sim.engines import ResolvedServer
from sim.fleet.build import build_server
from sim.fleet.dispatch import Fleet
from sim.fleet.pd import PdFleet
from sim.fleet.routers import make_router
from sim.recorder import Recorder
from sim.requests import Status
from sim.scenario import KvTransferSpec, RouterSpec
from sim.workload import Workload, make_client

__all__ = ["FleetRun", "replica_rows", "simulate_fleet"]

INF = float("inf")
SAMPLES = 2000
"""Samples of every replica's state over a run (queue length, KV usage, busy)."""


@dataclass
class FleetRun:
    """What a fleet run leaves: the shared per-request records, who served what, and samples."""

    recorder: Recorder
    labels: list[str]
    replica: np.ndarray
    """Replica index of each request (-1: refused by the router)."""
    routed: list[int]
    decisions: dict[str, int]
    router_rejected: int
    attempts: int
    """Submissions through the router, retries included."""
    shed: int
    """Requests llm-d refused with 429 (sheddable, pool saturated), retried ones counted each time."""
    sample_s: float
    waiting: np.ndarray = field(repr=False)
    running: np.ndarray = field(repr=False)
    kv_usage: np.ndarray = field(repr=False)
    pd: dict[str, Any] = field(default_factory=dict)
    """Disaggregated P/D: prefill routing, pool busy times, local prefills, KV moved."""


def simulate_fleet(
    members: list[ResolvedServer], router_spec: RouterSpec, workload: Workload, *, num_requests: int | None,
    duration_s: float, seed: int, fast: bool = True, prefill: list[ResolvedServer] | None = None,
    kv_transfer: KvTransferSpec | None = None, kv_bytes_per_token: float = 0.0,
) -> FleetRun:
    """Replay ``workload`` through the replicas ``members`` behind ``router_spec`` (with
    ``prefill`` replicas: a disaggregated fleet whose members are the decode pool)."""
    env = simpy.Environment()
    recorder = Recorder(max(len(workload), 1))
    client = make_client(workload, num_requests, duration_s)
    closed = workload.arrival_s is None
    n = len(members)
    router = make_router(router_spec, n, seed * 1_000_003 + 18)
    fleet = (PdFleet if prefill else Fleet)(env, client, router, router_spec, n, recorder, closed_loop=closed)
    p_recorder = Recorder(max(len(workload), 1))
    if prefill:
        assert isinstance(fleet, PdFleet) and kv_transfer is not None
        fleet.setup_pd(len(prefill), kv_transfer, kv_bytes_per_token, p_recorder)
    step_fast = fast and not (fleet.closed and n > 1)  # arrivals that depend on outcomes wait at most a pass
    servers = [build_server(m, len(workload), step_fast, seed, i) for i, m in enumerate(members)]
    independent = fleet.independent and not prefill
    envs = [simpy.Environment() for _ in range(n)] if independent else [env] * n
    fleet.compact = independent
    fleet.frontends = [m.frontend for m in members]
    fleet.indices_only = independent and fleet.content_free
    for server, feed, e in zip(servers, fleet.feeds, envs, strict=True):
        server.start(e, feed, recorder)
    fleet.start(list(servers))
    if prefill:
        assert isinstance(fleet, PdFleet)
        p_servers = [build_server(m, len(workload), step_fast, seed, n + j) for j, m in enumerate(prefill)]
        for server, feed in zip(p_servers, fleet.p_feeds, strict=True):
            server.start(env, feed, p_recorder)
        fleet.start_prefill(list(p_servers))
    if closed:
        horizon = duration_s if duration_s < INF else 60.0
    else:
        assert workload.arrival_s is not None
        horizon = float(workload.arrival_s[-1]) if len(workload) else 1.0
    target = max(100, min(SAMPLES, 200_000 // n))  # a few hundred thousand replica reads at most
    interval = [max(horizon / target, 1e-3)]
    samples: list[list[tuple[int, int, float]]] = []

    def sample() -> Any:
        while True:
            yield env.timeout(interval[0])
            samples.append([(s.waiting, s.running, s.kv_usage) for s in (fleet.snapshot(i) for i in range(n))])
            if len(samples) >= 2 * target:  # a long drain: keep every other sample, sample half as often
                del samples[1::2]
                interval[0] *= 2
            if fleet.frontier() == INF and not any(router.inflight) or env.peek() == INF:
                return  # all served, or nothing left to happen (requests stuck: reported below)

    columns: list[list[tuple[int, int, float]]] = [[] for _ in range(n)]

    def sample_one(i: int, e: simpy.Environment) -> Any:
        feed, column = fleet.feeds[i], columns[i]
        while len(column) < 4 * target:  # (a drain past four times the arrivals' span goes unsampled)
            yield e.timeout(interval[0])
            snap = fleet.snapshot(i)
            column.append((snap.waiting, snap.running, snap.kv_usage))
            if feed.next_arrival_s() == INF and not router.inflight[i] or e.peek() == INF:
                return

    if independent:  # each replica on its own clock, one after the other: no interleaving cost
        ends = []
        for i, e in enumerate(envs):
            e.process(sample_one(i, e))
            e.run()
            ends.append(recorder.now)
        recorder.now = max(ends)
        length = max(len(c) for c in columns)
        samples = [[c[k] if k < len(c) else (0, 0, 0.0) for c in columns] for k in range(length)]
    else:
        if n > 1:  # one replica: not sampled, so that its run is the lone server's to the last bit
            env.process(sample())
        env.run()
    recorder.trim()
    stuck = np.flatnonzero(recorder.status == Status.IN_FLIGHT)
    if stuck.size:
        i = int(stuck[0])
        raise ValueError(
            f"{stuck.size} request(s) could never be served (the first: {int(recorder.prompt_tokens[i])} prompt + "
            f"{int(recorder.output_tokens[i])} output tokens); give the replicas more KV capacity or cap the request lengths"
        )
    replica = np.full(recorder.capacity, -1, dtype=np.int32)
    for rid, i in fleet.replica_of.items():
        if rid < replica.size:
            replica[rid] = i
    arr = np.array(samples, dtype=float).reshape(-1, n, 3) if samples else np.zeros((0, n, 3))
    pd: dict[str, Any] = {}
    if isinstance(fleet, PdFleet):
        p_recorder.trim()
        pd = {"prefill_routed": fleet.p_routed, "prefill_busy_s": p_recorder.busy_s, "decode_busy_s": recorder.busy_s,
              "local_prefills": fleet.local_prefills, "prefill_fallbacks": fleet.fallbacks,
              "kv_transferred_gb": fleet.transferred_bytes / 1e9}
    return FleetRun(recorder, [m.label for m in members], replica, fleet.routed, dict(router.decisions),
                    fleet.station.rejected, fleet.num_attempts, fleet.shed, interval[0], arr[:, :, 0], arr[:, :, 1], arr[:, :, 2],
                    pd)


def _pct(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else float("nan")


def replica_rows(run: FleetRun, warmup: int) -> list[dict[str, Any]]:
    """Per replica: requests routed and completed, utilisation (fraction of samples with work
    inside), queue length and KV usage (time-averaged and p99 over the samples), prefix-cache
    hit rate (cached / prompt tokens), and its requests' mean and p99 TTFT."""
    rec = run.recorder
    counted = np.zeros(rec.capacity, dtype=bool)
    order = np.argsort(rec.arrival_s, kind="stable")
    counted[order[warmup:]] = True
    rows = []
    for i, label in enumerate(run.labels):
        mine = run.replica == i
        done = mine & (rec.status == Status.COMPLETED)
        ttft = (rec.first_token_s - rec.arrival_s)[done & counted] * 1e3
        prompt = float(rec.prompt_tokens[mine].sum())
        waiting, running, kv = run.waiting[:, i], run.running[:, i], run.kv_usage[:, i]
        rows.append({
            "replica": i, "server": label, "routed": int(run.routed[i]), "completed": int(done.sum()),
            "rejected": int((mine & (rec.status == Status.REJECTED)).sum()),
            "utilisation": float(np.mean((waiting + running) > 0)) if waiting.size else float("nan"),
            "mean_queue": float(np.mean(waiting)) if waiting.size else float("nan"), "p99_queue": _pct(waiting, 99),
            "mean_running": float(np.mean(running)) if running.size else float("nan"),
            "mean_kv_usage": float(np.mean(kv)) if kv.size else float("nan"), "p99_kv_usage": _pct(kv, 99),
            "prefix_hit_rate": float(rec.cached_tokens[mine].sum()) / prompt if prompt else float("nan"),
            "mean_ttft_ms": float(np.mean(ttft)) if ttft.size else float("nan"), "p99_ttft_ms": _pct(ttft, 99),
        })
    return rows
