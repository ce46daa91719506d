"""The Ollama multi-model scheduler by version (LOCAL_SERVERS.md §1.1, §1.3), tied to the >= 0.11.5 one.

One model alone behaves the same whatever the version (nothing to block behind); before 0.11.5 a
request for a loaded model waits behind a request for a loading model (head-of-line blocking,
ollama #5724) and can meet the 503 cap, which it never does from 0.11.5; a second load asked for
while one runs starts at a 250 ms retry; 0.30 evicts when its prediction exceeds 80 % of the free
VRAM, for a pair the legacy estimate lets share the card; the resident limit and the queue cap
take their defaults by version; up to 0.1.32 one mutex serves one request at a time and swaps
models even when they would fit together; a request with another num_ctx reloads its model.
"""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from sim.catalog import get_hardware, get_model
from sim.engines import CUDA_CONTEXT_BYTES
from sim.engines.slots import ollama_max_queue
from sim.metrics import end_times
from sim.multimodel import (
    REQUEUE_S,
    MultiModelServer,
    max_loaded,
    resolve_models,
    runner_of_requests,
)
from sim.recorder import Recorder
from sim.requests import Status
from sim.scenario import parse_scenario
from sim.scenario.servers import OllamaSpec
from sim.simulation import run_server
from sim.workload.table import Workload
from tests.helpers import drive

HW = get_hardware("rtx-4090")
NO_FRONT = {"request_s": 0.0, "token_s": 0.0, "step_s": 0.0}
SMALL, MID, BIG = "llama-3.1-8b", "qwen2.5-14b", "qwen2.5-32b"


def _run(version: str, models: list[str], arrivals: list[float], which: list[int], keep: float = -1.0,
         **options: object) -> tuple[MultiModelServer, Recorder]:
    """Requests at ``arrivals`` naming ``models[which[i]]`` (100-token prompts, 20-token outputs)."""
    spec = OllamaSpec(name="o", version=version, frontend=NO_FRONT, **options,
                      models=[{"model": m, "weight": 1 / len(models), "keep_alive_s": keep} for m in models])
    n = len(arrivals)
    workload = Workload(np.full(n, 100), np.full(n, 20), np.array(arrivals, dtype=float))
    server = MultiModelServer(spec, resolve_models(spec, HW), HW, np.array(which))
    recorder = drive(server, workload, n)
    return server, recorder


@pytest.mark.parametrize(("old", "new"), [("0.11.4", "0.12.0"), ("0.1.32", "0.1.33")])
def test_one_model_is_served_alike_by_every_scheduler(old: str, new: str) -> None:
    """With one model there is nothing to block behind: no fast path, a load beside the loop, or a
    mutex give the same times as the newer scheduler (the queue cap set out of the way)."""
    rng = np.random.default_rng(1)
    arrivals = list(np.cumsum(rng.exponential(1.0, 60)))
    a_server, a = _run(old, [SMALL], arrivals, [0] * 60, max_queue=1000)
    b_server, b = _run(new, [SMALL], arrivals, [0] * 60, max_queue=1000)
    assert a_server.runners[0].loads == b_server.runners[0].loads == 1
    assert np.all(a.status == Status.COMPLETED) and np.all(b.status == Status.COMPLETED)
    np.testing.assert_allclose(a.first_token_s, b.first_token_s, rtol=1e-12)


def test_a_loaded_model_waits_behind_a_loading_one_only_before_0_11_5() -> None:
    """SMALL loaded; two requests for MID (which fits beside it) start its load; a request for SMALL
    right after waits until MID is ready on 0.11.4 (the second MID request holds the loop), not on
    0.12.0 (the fast path)."""
    arrivals, which = [0.0, 30.0, 30.01, 30.02], [0, 1, 1, 0]
    first = {}
    for version in ("0.11.4", "0.12.0"):
        server, rec = _run(version, [SMALL, MID], arrivals, which)
        small, mid = server.runners
        assert [small.loads, mid.loads, small.evictions + mid.evictions] == [1, 1, 0]
        first[version] = rec.first_token_s[3]
        ready = arrivals[1] + mid.load_s  # MID's load starts when its first request arrives
    assert first["0.11.4"] >= ready > first["0.12.0"]
    alone = _run("0.12.0", [SMALL], [0.0, 30.02], [0, 0])[1]  # the same request with nothing else about
    assert first["0.12.0"] == pytest.approx(alone.first_token_s[1], rel=1e-12)


def test_from_0_11_5_a_request_queued_during_its_models_load_waits_for_the_next_load() -> None:
    """The other face of loads inside the loop: SMALL loading, then requests for MID and SMALL. On
    0.12.0 both are pending; when SMALL is ready the loop takes MID's request and loads MID, and the
    second SMALL request, though its model is loaded, waits out that load. On 0.11.4 it holds the
    loop only until SMALL is ready (MID's request was requeued)."""
    arrivals, which = [0.0, 0.5, 1.0], [0, 1, 0]
    first = {}
    for version in ("0.11.4", "0.12.0"):
        server, rec = _run(version, [SMALL, MID], arrivals, which)
        small, mid = server.runners
        assert [small.loads, mid.loads] == [1, 1]
        first[version] = rec.first_token_s[2]
        behind = small.load_s + mid.load_s  # SMALL ready, then MID's whole load
    assert first["0.11.4"] < behind <= first["0.12.0"]


def test_requests_for_a_loaded_model_meet_the_503_cap_only_before_0_11_5() -> None:
    """T7 by version: while MID loads (its second request held at the head), requests for the
    loaded SMALL fill the queue's one remaining place and the rest get 503 on 0.11.4; on 0.12.0
    they bypass the queue and none is refused."""
    cap = 2
    a_times = [30.5 + 0.5 * k for k in range(10)]
    arrivals, which = [0.0, 30.0, 30.01, *a_times], [0, 1, 1] + [0] * len(a_times)
    for version, refused in (("0.11.4", True), ("0.12.0", False)):
        server, rec = _run(version, [SMALL, MID], arrivals, which, max_queue=cap)
        ready = arrivals[1] + server.runners[1].load_s
        during = [3 + k for k, t in enumerate(a_times) if t < ready]
        assert len(during) > cap  # the test needs more requests than places while MID loads
        rejected = set(np.flatnonzero(rec.status == Status.REJECTED))
        if refused:  # the second MID request holds one place, the first SMALL request the other
            assert rejected == set(during[cap - 1:])
        else:
            assert not rejected


def test_a_second_load_waits_for_a_250_ms_retry_before_0_11_5() -> None:
    """A load asked for while another runs is requeued every 250 ms on 0.11.4 and starts at the
    first retry after the running load ends; on 0.12.0 (loads inside the loop) it starts at once then."""
    arrivals, which = [0.0, 1.1], [0, 1]
    first = {}
    for version in ("0.11.4", "0.12.0"):
        server, rec = _run(version, [SMALL, MID], arrivals, which)
        assert [r.loads for r in server.runners] == [1, 1]
        first[version] = rec.first_token_s[1]
        ready = server.runners[0].load_s
    retry = arrivals[1] + np.ceil((ready - arrivals[1]) / REQUEUE_S) * REQUEUE_S
    assert first["0.11.4"] - first["0.12.0"] == pytest.approx(retry - ready, abs=1e-9)
    assert 0 < first["0.11.4"] - first["0.12.0"] <= REQUEUE_S


def test_the_0_30_prediction_evicts_a_pair_the_legacy_estimate_lets_share_the_card() -> None:
    """qwen2.5-3b then qwen2.5-32b: by the legacy estimate both fit fully; 0.30's prediction of
    the 32B exceeds 80 % of what the 3B leaves free, so 0.30 evicts the 3B and 0.12 does not."""
    models = ["qwen2.5-3b", BIG]
    legacy = resolve_models(OllamaSpec(version="0.12.0", models=[{"model": m, "weight": 0.5} for m in models]), HW)
    new = resolve_models(OllamaSpec(version="0.30.0", models=[{"model": m, "weight": 0.5} for m in models]), HW)
    gpu = HW.memory_bytes
    assert legacy[1].fits_gpu and legacy[0].vram_bytes + legacy[1].vram_bytes <= gpu  # fits by the estimate
    assert new[1].predicted_bytes > 0.8 * (gpu - new[0].vram_bytes)  # not by 0.30's rule
    arrivals, which = [0.0, 30.0, 60.0], [0, 1, 0]
    server, _ = _run("0.12.0", models, arrivals, which)
    assert [r.loads for r in server.runners] == [1, 1] and [r.evictions for r in server.runners] == [0, 0]
    server, rec = _run("0.30.0", models, arrivals, which)
    # the 3B is evicted for the 32B, then loads again beside it (its prediction fits the 80 %)
    assert new[0].predicted_bytes <= 0.8 * (gpu - new[1].vram_bytes)
    assert [r.loads for r in server.runners] == [2, 1] and [r.evictions for r in server.runners] == [1, 0]
    assert np.all(rec.status == Status.COMPLETED)


def test_the_prediction_is_the_file_and_an_f16_kv_of_the_whole_context() -> None:
    """For a plain GQA model with f16 KV and num_batch 512, 0.30's prediction is the legacy
    estimate less the CUDA context; raising num_batch adds 768 MiB (1024) or 2 GiB (2048)."""
    model = get_model(SMALL)
    runner = resolve_models(OllamaSpec(version="0.30.0", models=[{"model": SMALL, "weight": 1.0}]), HW)[0]
    assert model.sliding_layers == 0 and model.mla is None
    assert runner.predicted_bytes == pytest.approx(runner.vram_bytes - CUDA_CONTEXT_BYTES, rel=1e-12)
    for batch, extra in ((1024, 768 << 20), (2048, 2 << 30)):
        bigger = resolve_models(OllamaSpec(version="0.30.0", num_batch=batch, models=[{"model": SMALL, "weight": 1.0}]), HW)[0]
        assert bigger.predicted_bytes - runner.predicted_bytes == extra


@pytest.mark.parametrize(("version", "resident"), [("0.1.33", 1), ("0.1.48", 1), ("0.2.0", 3), ("0.12.0", 3)])
def test_the_resident_limit_by_version(version: str, resident: int) -> None:
    """OLLAMA_MAX_LOADED_MODELS: 1 up to 0.1.48, 3 x GPUs after; with 1, two models that fit
    together still swap on every alternation."""
    assert max_loaded(OllamaSpec(version=version), HW) == resident
    assert max_loaded(OllamaSpec(version=version), get_hardware("rtx-4090").model_copy(update={"count": 2})) == (
        1 if resident == 1 else 6)
    assert max_loaded(OllamaSpec(version=version, max_loaded_models=2), HW) == 2
    n = 8
    server, _ = _run(version, [SMALL, MID], [30.0 * k for k in range(n)], [k % 2 for k in range(n)])
    assert sum(r.loads for r in server.runners) == (n if resident == 1 else 2)


@pytest.mark.parametrize(("version", "cap"), [("0.1.33", 10), ("0.1.34", 512), ("0.12.0", 512)])
def test_the_queue_cap_by_version(version: str, cap: int) -> None:
    """OLLAMA_MAX_QUEUE: 10 hard-coded in 0.1.33, 512 after: 12 requests for an unloaded model at
    one instant lose the two beyond 10 only on 0.1.33."""
    assert ollama_max_queue(OllamaSpec(version=version)) == cap
    assert ollama_max_queue(OllamaSpec(version=version, max_queue=3)) == 3
    _, rec = _run(version, [SMALL], [0.0] * 12, [0] * 12)
    assert int(np.sum(rec.status == Status.REJECTED)) == max(0, 12 - cap)


def test_up_to_0_1_32_one_mutex_serves_one_request_at_a_time() -> None:
    """No scheduler: no queue cap (a burst of 600 all complete), one request in service at a time
    in arrival order, and a request for the other model swaps them even though both would fit."""
    assert ollama_max_queue(OllamaSpec(version="0.1.32")) == 1 << 62
    n = 600
    server, rec = _run("0.1.32", [SMALL, MID], [1e-6 * k for k in range(n)], [k % 2 for k in range(n)])
    assert np.all(rec.status == Status.COMPLETED)
    end = end_times(rec)
    assert np.all(rec.first_token_s[1:] >= end[:-1])  # in arrival order, each after the one before ends
    assert sum(r.loads for r in server.runners) == n and sum(r.evictions for r in server.runners) == n - 1


def _contexts(version: str, ctx: list[int], which: list[int]) -> tuple[MultiModelServer, Recorder]:
    """One model whose clients send ``ctx`` values; request i needs runner ``which[i]``, 30 s apart."""
    spec = OllamaSpec(name="o", version=version, frontend=NO_FRONT,
                      models=[{"model": SMALL, "weight": 1.0, "keep_alive_s": -1, "request_num_ctx": ctx}])
    n = len(which)
    workload = Workload(np.full(n, 100), np.full(n, 20), 30.0 * np.arange(n))
    server = MultiModelServer(spec, resolve_models(spec, HW), HW, np.array(which))
    recorder = drive(server, workload, n)
    return server, recorder


@pytest.mark.parametrize("version", ["0.1.32", "0.11.4", "0.12.0", "0.30.0"])
def test_a_different_num_ctx_reloads_the_model_and_the_same_does_not(version: str) -> None:
    """T8 (ollama #4541): requests alternating between two num_ctx reload the model every time;
    requests with one value load it once."""
    n = 8
    server, rec = _contexts(version, [2048, 8192], [k % 2 for k in range(n)])
    assert [r.options for r in server.runners] == ["num_ctx=2048", "num_ctx=8192"]
    assert sum(r.loads for r in server.runners) == n and sum(r.evictions for r in server.runners) == n - 1
    assert np.all(rec.status == Status.COMPLETED)
    server, _ = _contexts(version, [2048, 8192], [1] * n)
    assert [r.loads for r in server.runners] == [0, 1]


def test_one_num_ctx_equal_to_the_servers_changes_nothing() -> None:
    """request_num_ctx [the server's num_ctx] is the server without it: same runner, same draws, same run."""
    base = {"name": "o", "engine": "ollama", "version": "0.12.0", "frontend": NO_FRONT}
    mix = [{"model": SMALL, "weight": 0.7}, {"model": MID, "weight": 0.3}]
    runs = []
    for ctx in (None, [4096]):
        models = [{**m, "request_num_ctx": ctx} if ctx and m["model"] == SMALL else m for m in mix]
        sc = parse_scenario({"name": "c", "seed": 5, "model": SMALL, "hardware": "rtx-4090",
                             "workload": {"arrival": {"kind": "poisson", "rate_per_s": 0.5},
                                          "prompt_tokens": {"kind": "fixed", "value": 200},
                                          "output_tokens": {"kind": "fixed", "value": 40}, "num_requests": 60},
                             "servers": [{**base, "models": models}]})
        runs.append(run_server(sc, 0))
    assert runs[0].notes["models"] == runs[1].notes["models"]
    np.testing.assert_array_equal(runs[0].recorder.first_token_s, runs[1].recorder.first_token_s)


def test_the_num_ctx_draw_keeps_each_requests_model() -> None:
    """Adding request_num_ctx values to a model leaves every request's model as drawn before."""
    plain = OllamaSpec(models=[{"model": SMALL, "weight": 0.6}, {"model": MID, "weight": 0.4}])
    mixed = OllamaSpec(models=[{"model": SMALL, "weight": 0.6, "request_num_ctx": [2048, 4096, 8192]},
                               {"model": MID, "weight": 0.4}])
    a, b = runner_of_requests(plain, 500, 9), runner_of_requests(mixed, 500, 9)
    runners = resolve_models(mixed, HW)
    assert np.array_equal(np.array([runners[k].model for k in b]), np.array([plain.models[k].model for k in a]))
    assert set(b[a == 0]) == {0, 1, 2} and set(b[a == 1]) == {3}
    with pytest.raises(ValidationError, match="request_num_ctx"):
        OllamaSpec(models=[{"model": SMALL, "weight": 1.0, "request_num_ctx": [4096, 4096]}])
