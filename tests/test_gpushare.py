"""Processes on one GPU share its time (sim.gpushare), tied to processor sharing.

Two processes with constant passes: while both compute, each pass takes twice as long (the GPU's
time is split between them); alone, a process runs at its own speed. Through the multi-model
servers: two resident models used one at a time give exactly the results of unshared runners;
used together, their passes stretch, and the total busy time is conserved.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import simpy

from sim.catalog import get_hardware
from sim.costs import ConstantStepCost
from sim.gpushare import GpuShare, SharedStepCost
from sim.multimodel import MultiModelServer, resolve_models
from sim.recorder import Recorder
from sim.requests import Request, Status
from sim.scenario import parse_scenario
from sim.scenario.servers import OllamaSpec
from sim.servers.base import IterationServer
from sim.servers.slots import SlotScheduler
from sim.workload import generate_workload, make_client
from tests.helpers import drive

HW = get_hardware("rtx-4090")
NO_FRONT = {"request_s": 0.0, "token_s": 0.0, "step_s": 0.0}
STEP = 0.01


def _workload(output: int, n: int = 1, users: int = 1):  # noqa: ANN202 - a test helper
    sc = parse_scenario({
        "name": "g", "seed": 1, "model": "llama-3.1-8b", "hardware": "rtx-4090",
        "workload": {"arrival": {"kind": "closed_loop", "users": users, "start_spread_s": 0},
                     "prompt_tokens": {"kind": "fixed", "value": 64},
                     "output_tokens": {"kind": "fixed", "value": output}, "num_requests": n},
        "servers": [{"engine": "ollama"}],
    })
    return generate_workload(sc.workload, sc.seed, model_context_tokens=8192)


class _Tell:
    """A client wrapper that tells the share when its process has nothing left in flight."""

    def __init__(self, client: Any, share: GpuShare, member: int) -> None:
        self.client, self.share, self.member, self.open = client, share, member, 0

    def next_arrival_s(self) -> float:
        return self.client.next_arrival_s()

    def pop_arrivals(self, now: float) -> list[Request]:
        out = self.client.pop_arrivals(now)
        self.open += len(out)
        if out:
            self.share.set_busy(self.member, True, now)
        return out

    def on_done(self, request: Request, now: float) -> None:
        self.client.on_done(request, now)
        self.open -= 1
        if self.open == 0:
            self.share.set_busy(self.member, False, now)


def _ends(outputs: list[int], shared: bool) -> list[float]:
    from sim.metrics import end_times

    policy = resolve_models(OllamaSpec(name="o", models=[{"model": "llama-3.1-8b", "weight": 1.0}]), HW)[0]
    share = GpuShare()
    env = simpy.Environment()
    recorders = []
    for k, out in enumerate(outputs):
        cost = SharedStepCost(ConstantStepCost(STEP), share) if shared else ConstantStepCost(STEP)
        server = IterationServer(SlotScheduler(policy.resolved.policy), cost, fast=False)  # type: ignore[arg-type]
        share.attach(k, server)
        recorder = Recorder(1)
        server.start(env, _Tell(make_client(_workload(out), 1), share, k), recorder)
        recorders.append(recorder)
        share.set_busy(k, True, 0.0)  # every request arrives at 0: all compute from the first pass
    env.run()
    ends = []
    for r in recorders:
        r.trim()
        assert r.status[0] == Status.COMPLETED
        ends.append(float(end_times(r)[0]))
    return ends


def test_alone_a_process_runs_at_its_own_speed() -> None:
    # one pass per output token (the prompt pass gives the first): n passes of STEP
    assert _ends([50], shared=True) == pytest.approx([50 * STEP], rel=1e-12)
    assert _ends([50], shared=True) == _ends([50], shared=False)


def test_two_busy_processes_each_get_half_the_gpu() -> None:
    # both compute throughout: every pass takes 2 x STEP, so both end at 2 n STEP
    assert _ends([50, 50], shared=True) == pytest.approx([100 * STEP, 100 * STEP], rel=1e-9)
    # unshared (today's simplification) they would run side by side at full speed
    assert _ends([50, 50], shared=False) == pytest.approx([50 * STEP, 50 * STEP], rel=1e-9)


def test_processor_sharing_when_one_finishes_first() -> None:
    # A (n passes) and B (2n): both at half speed until A ends at 2n STEP; B has n passes left,
    # alone at full speed: 3n STEP (the pass in progress when A ends keeps its price: at most
    # one STEP more). Total busy time is conserved: 3n passes of STEP.
    n = 40
    a, b = _ends([n, 2 * n], shared=True)
    assert a == pytest.approx(2 * n * STEP, rel=1e-9)
    assert 3 * n * STEP - 1e-9 <= b <= 3 * n * STEP + STEP + 1e-9


def _box(models: list[str], model_of: np.ndarray, users: int, n: int) -> tuple[MultiModelServer, Recorder]:
    spec = OllamaSpec(name="o", version="0.12.0", frontend=NO_FRONT,
                      models=[{"model": m, "weight": 1 / len(models), "keep_alive_s": -1} for m in models])
    workload = _workload(40, n=n, users=users)
    server = MultiModelServer(spec, resolve_models(spec, HW), HW, model_of)
    return server, drive(server, workload, n)


def test_resident_models_used_together_slow_each_other_used_apart_do_not(monkeypatch: pytest.MonkeyPatch) -> None:
    from sim.metrics import end_times
    from sim.workload import Workload

    models = ["llama-3.1-8b", "qwen2.5-3b"]
    # one user: the two models are never busy at once, so sharing changes nothing
    n = 12
    server, _ = _box(models, np.arange(n) % 2, users=1, n=n)
    assert server.gpu.busy_time_s == 0.0

    # fixed arrivals, requests alternating between the two resident models (one slot each, FIFO),
    # after both loads: with the GPU shared every pass is at least its own length, so no request
    # ends sooner than unshared; passes run while the other model computes take twice as long
    m = 16
    arrivals = 30.0 + 0.2 * np.arange(m)
    workload = Workload(np.full(m, 200), np.full(m, 120), arrivals)

    def run() -> tuple[MultiModelServer, np.ndarray]:
        spec = OllamaSpec(name="o", version="0.12.0", frontend=NO_FRONT,
                          models=[{"model": x, "weight": 0.5, "keep_alive_s": -1} for x in models])
        warm = Workload(np.full(2, 10), np.full(2, 2), np.zeros(2))  # loads both models first
        both = Workload(np.concatenate([warm.prompt_tokens, workload.prompt_tokens]),
                        np.concatenate([warm.output_tokens, workload.output_tokens]),
                        np.concatenate([warm.arrival_s, workload.arrival_s]))
        box = MultiModelServer(spec, resolve_models(spec, HW), HW, np.arange(m + 2) % 2)
        rec = drive(box, both, m + 2)
        assert np.all(rec.status[: m + 2] == Status.COMPLETED)
        return box, (end_times(rec) - rec.arrival_s)[2: m + 2]

    shared_box, shared = run()
    monkeypatch.setattr(GpuShare, "factor", property(lambda self: 1))
    _, alone = run()
    assert shared_box.gpu.busy_time_s > 0
    assert np.all(shared >= alone * (1 - 1e-9))
    assert np.any(shared > 1.05 * alone)  # (the exact 2x of two busy processes: the tests above)
