"""llama-swap (issue 20), tied to the Ollama scheduler and to llama-swap's own rules.

Readiness is quantised by the health poll (0.25 s, then every 5 s up to v217, every 1 s after);
a burst of strictly alternating requests for two models that do not fit together pays a swap per
request on Ollama and on llama-swap's ProcessGroup (v217), and two swaps on the FIFO router (v250),
which serves the queue grouped by model; one model never swaps twice; the concurrency limit
answers 429; bad mixes are refused with the fix.
"""

from __future__ import annotations

import numpy as np
import pytest
import simpy
from pydantic import ValidationError

from sim.catalog import get_hardware
from sim.engines import EngineError
from sim.llamaswap import ready_after, simulate_swap
from sim.multimodel import MultiModelServer, resolve_models
from sim.recorder import Recorder
from sim.requests import Status
from sim.scenario import parse_scenario
from sim.scenario.servers import LlamaCppSpec, LlamaSwapSpec, OllamaSpec
from sim.workload import generate_workload, make_client

HW = get_hardware("rtx-4090")
NO_FRONT = {"request_s": 0.0, "token_s": 0.0, "step_s": 0.0}
PAIR = [{"model": "qwen2.5-32b", "weight": 0.5}, {"model": "qwen2.5-14b", "weight": 0.5}]


@pytest.mark.parametrize(("load", "release", "ready"), [
    (0.1, 200, 0.25), (0.25, 250, 0.25), (0.3, 217, 5.25), (5.25, 217, 5.25), (5.3, 217, 10.25),
    (0.3, 218, 1.25), (3.0, 250, 3.25), (3.26, 250, 4.25),
])
def test_readiness_is_quantised_by_the_health_poll(load: float, release: int, ready: float) -> None:
    assert ready_after(load, release) == pytest.approx(ready)


def _burst(n: int):
    sc = parse_scenario({
        "name": "b", "seed": 1, "model": "qwen2.5-14b", "hardware": "rtx-4090",
        "workload": {"arrival": {"kind": "poisson", "rate_per_s": 1e6}, "prompt_tokens": {"kind": "fixed", "value": 64},
                     "output_tokens": {"kind": "fixed", "value": 16}, "num_requests": n},
        "servers": [{"engine": "vllm"}],
    })
    return generate_workload(sc.workload, sc.seed, model_context_tokens=8192)


def _swap(version: str, n: int, models: list[dict] = PAIR) -> tuple[Recorder, object]:
    workload = _burst(n)
    spec = LlamaCppSpec(ctx_size=4096, frontend=NO_FRONT, llama_swap={"version": version, "models": models})
    return simulate_swap(spec, HW, make_client(workload, n), n, 0, model_of=np.arange(n) % len(models))


def _ollama(n: int) -> MultiModelServer:
    workload = _burst(n)
    spec = OllamaSpec(frontend=NO_FRONT, models=PAIR)
    server = MultiModelServer(spec, resolve_models(spec, HW), HW, np.arange(n) % 2)
    env, recorder = simpy.Environment(), Recorder(n)
    server.start(env, make_client(workload, n), recorder)
    env.run()
    return server


def test_alternating_burst_swaps_per_request_on_ollama_and_v217_twice_on_the_fifo_router() -> None:
    n = 10
    assert sum(r.loads for r in _ollama(n).runners) == n
    rec, old = _swap("v217", n)
    assert old.swaps == n and np.all(rec.status[:n] == Status.COMPLETED)
    rec, new = _swap("v250", n)
    assert new.swaps == 2 and np.all(rec.status[:n] == Status.COMPLETED)
    # grouped: the first model's requests all finish before the second model's first token
    first = rec.first_token_s[:n]
    assert np.max(rec.finish_s[:n][0::2]) <= np.min(first[1::2])


def test_one_model_starts_once() -> None:
    _, server = _swap("v250", 12, [{"model": "llama-3.1-8b", "weight": 1.0}])
    assert server.swaps == 1 and server.runners[0].evictions == 0


def test_the_concurrency_limit_answers_429() -> None:
    workload = _burst(15)
    spec = LlamaCppSpec(ctx_size=4096, frontend=NO_FRONT, llama_swap={
        "version": "v250", "concurrency_limit": 4, "models": [{"model": "llama-3.1-8b", "weight": 1.0}]})
    rec, _ = simulate_swap(spec, HW, make_client(workload, 15), 15, 0, model_of=np.zeros(15, dtype=int))
    assert int(np.sum(rec.status[:15] == Status.REJECTED)) == 11


def test_bad_swap_configs_are_refused() -> None:
    with pytest.raises(ValidationError, match="weights sum to 0.9, not 1"):
        LlamaSwapSpec(models=[{"model": "a", "weight": 0.4}, {"model": "b", "weight": 0.5}])
    with pytest.raises(EngineError, match="storage 'tape'"):
        _swap_spec = LlamaCppSpec(llama_swap={"storage": "tape", "models": [{"model": "llama-3.1-8b", "weight": 1.0}]})
        simulate_swap(_swap_spec, HW, make_client(_burst(2), 2), 2, 0)
