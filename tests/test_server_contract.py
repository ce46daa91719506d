"""One suite over every server: conservation, determinism, causality, tokens delivered."""

from __future__ import annotations

import numpy as np
import pytest

from sim.requests import Status
from sim.simulation import run_server
from tests.helpers import tiny_scenario

ALL_SERVERS = [
    {"engine": "vllm", "max_model_len": 8192},
    {"engine": "vllm", "version": "0.6.3", "max_model_len": 8192},
    {"engine": "ollama", "version": "0.5.7"},
    {"engine": "ollama", "version": "0.12.0", "cold_start": True, "load_time_s": 3.0, "max_queue": 5},
    {"engine": "llama.cpp", "version": "b6000"},
    {"engine": "llama.cpp", "version": "b7100"},
    {"kind": "paged_batching", "num_kv_blocks": 300},
    {"kind": "serial_decode", "parallel": 2},
    {"kind": "single_queue", "num_parallel": 3},
]


@pytest.fixture(params=ALL_SERVERS, ids=lambda s: "-".join(str(v) for v in s.values()))
def server(request: pytest.FixtureRequest) -> dict:
    return request.param


def _scenario(server: dict, seed: int = 3):
    return tiny_scenario(
        server, step_s=None, seed=seed, hardware="rtx-4090", arrival={"kind": "poisson", "rate_per_s": 4.0},
        prompt={"kind": "lognormal", "mean": 400, "sigma": 0.8, "max": 6000},
        output={"kind": "uniform", "low": 1, "high": 300}, num_requests=300, timeout_s=20.0,
    )


def test_every_arrival_is_accounted_for(server: dict) -> None:
    result = run_server(_scenario(server))
    rec, m = result.recorder, result.metrics
    assert rec.num_arrived == 300
    ends = [m[k] for k in ("completed", "timeouts", "rejected", "cancelled", "in_flight")]
    assert sum(ends) == m["arrived"]
    assert np.sum(rec.status == Status.IN_FLIGHT) == 0  # the run drains


def test_times_are_causal_and_tokens_delivered(server: dict) -> None:
    rec = run_server(_scenario(server)).recorder
    done = rec.status == Status.COMPLETED
    assert done.sum() > 0
    assert np.all(rec.first_token_s[done] > rec.arrival_s[done])
    assert np.all(rec.finish_s[done] >= rec.first_token_s[done])
    assert np.all(rec.started_s[done] >= rec.arrival_s[done])
    timed_out = rec.status == Status.TIMEOUT
    assert np.allclose(rec.finish_s[timed_out] - rec.arrival_s[timed_out], 20.0)
    truncated = done & (rec.generated < rec.output_tokens)
    # only a slot server without context shift stops early (a full slot): never vLLM
    assert not truncated.any() or server.get("engine") == "llama.cpp" or server.get("kind") == "serial_decode"


def test_same_seed_same_records_and_other_seed_differs(server: dict) -> None:
    a, b = run_server(_scenario(server)), run_server(_scenario(server))
    c = run_server(_scenario(server, seed=4))
    for col in ("arrival_s", "first_token_s", "finish_s", "status", "generated"):
        np.testing.assert_array_equal(getattr(a.recorder, col), getattr(b.recorder, col))
    assert not np.array_equal(a.recorder.arrival_s, c.recorder.arrival_s)


def test_cold_start_rejects_beyond_max_queue_while_loading() -> None:
    # Ollama loading for 3 s with OLLAMA_MAX_QUEUE=5: at 4 req/s about 12 arrive during the load;
    # the first 5 queue, the rest get HTTP 503.
    rec = run_server(_scenario(ALL_SERVERS[3])).recorder
    during = rec.arrival_s < 3.0
    assert np.sum(during & (rec.status != Status.REJECTED)) == 5
    assert np.all(rec.status[~during] != Status.REJECTED)
    assert np.nanmin(rec.first_token_s) > 3.0


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "reference"])
def test_inter_token_gaps_add_up_to_each_request_decode_time(server: dict, fast: bool) -> None:
    # Every token after a request's first closes one gap, so the pooled gaps sum to
    # sum(finish - first_token) over the requests that completed (none time out here).
    sc = tiny_scenario(
        server, step_s=None, seed=5, hardware="rtx-4090", arrival={"kind": "poisson", "rate_per_s": 3.0},
        prompt={"kind": "uniform", "low": 10, "high": 900}, output={"kind": "uniform", "low": 1, "high": 200},
        num_requests=150,
    )
    rec = run_server(sc, fast=fast).recorder
    assert np.all((rec.status == Status.COMPLETED) | (rec.status == Status.REJECTED))  # 503s: no tokens
    done = rec.status == Status.COMPLETED
    _, g0, slope, count, weight = (np.asarray(c, dtype=float) for c in rec.itl_columns())
    gaps = np.sum(weight * (count * g0 + slope * count * (count - 1) / 2))
    tokens = np.sum(weight * count)
    assert tokens == np.sum(rec.generated[done] - 1)
    assert gaps == pytest.approx(np.sum((rec.finish_s - rec.first_token_s)[done]), rel=1e-6)


@pytest.mark.parametrize("blocks", [60, 300, 5000])
def test_paged_pool_is_whole_again_after_the_run(blocks: int) -> None:
    import simpy

    from sim.recorder import Recorder
    from sim.simulation import _build, resolve_servers, scenario_workload
    from sim.workload import make_client

    sc = tiny_scenario(
        {"kind": "paged_batching", "num_kv_blocks": blocks}, step_s=None, seed=3, hardware="rtx-4090",
        arrival={"kind": "poisson", "rate_per_s": 4.0}, num_requests=300, timeout_s=20.0,
        prompt={"kind": "lognormal", "mean": 400, "sigma": 0.8, "max": blocks * 16 - 400},
        output={"kind": "uniform", "low": 1, "high": 300},
    )
    resolved = resolve_servers(sc)[0]
    workload = scenario_workload(sc)
    env, rec = simpy.Environment(), Recorder(len(workload))
    server = _build(resolved, workload, True, sc.seed)
    server.start(env, make_client(workload, sc.workload.num_requests), rec)
    env.run()
    pool = server.scheduler.pool
    assert pool.num_free == pool.num_blocks
    assert not server.scheduler.running and server.scheduler.decode.num_seqs == 0


def test_a_paged_pool_refuses_requests_it_could_never_hold() -> None:
    """A bare paged server's default max_model_len is its KV capacity (10 blocks x 4 = 40
    tokens): longer requests get HTTP 400 at once instead of waiting forever at the queue head."""
    sc = tiny_scenario(
        {"kind": "paged_batching", "num_kv_blocks": 10, "block_size": 4}, step_s=None,
        prompt={"kind": "uniform", "low": 8, "high": 60}, output={"kind": "uniform", "low": 1, "high": 20},
        num_requests=100, arrival={"kind": "poisson", "rate_per_s": 5.0},
    )
    rec = run_server(sc).recorder
    too_long = rec.prompt_tokens + rec.output_tokens > 40
    assert too_long.any() and (~too_long).any()
    assert np.all(rec.status[too_long] == Status.CANCELLED)
    assert np.all(rec.status[~too_long] == Status.COMPLETED)


def test_a_max_model_len_beyond_the_paged_pool_is_refused_like_vllm_refuses_to_start() -> None:
    from sim.scenario import ScenarioError
    from sim.simulation import resolve_servers

    sc = tiny_scenario({"kind": "paged_batching", "num_kv_blocks": 10, "block_size": 4, "max_model_len": 64})
    with pytest.raises(ScenarioError, match=r"holds 40 tokens.*max_model_len <= 40"):
        resolve_servers(sc)
