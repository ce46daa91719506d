"""Several models on one Ollama server (issue 20), tied to today's one-model server.

One model kept forever is today's server with a cold start of the same load time (every metric
equal); two models that fit together load once each and never evict; two that do not fit, under
strictly alternating traffic, pay an unload and a load per request; the pending queue's 503 cap
holds for a model being loaded, never for a loaded one; keep_alive 0 reloads after every idle
moment; bad mixes are refused with the field and a fix.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from sim.catalog import get_hardware, get_model
from sim.engines import EngineError, resolve_server
from sim.metrics import summarize
from sim.multimodel import MultiModelServer, resolve_models
from sim.recorder import Recorder
from sim.requests import Status
from sim.scenario import parse_scenario
from sim.scenario.servers import OllamaSpec
from sim.simulation import run_server
from sim.workload import Workload, generate_workload, make_client
from tests.helpers import drive

HW = get_hardware("rtx-4090")
NO_FRONT = {"request_s": 0.0, "token_s": 0.0, "step_s": 0.0}


def _scenario(server: dict, users: int = 2, n: int = 40, arrival: dict | None = None) -> object:
    return parse_scenario({
        "name": "mm", "seed": 3, "model": "llama-3.1-8b", "hardware": "rtx-4090",
        "workload": {"arrival": arrival or {"kind": "closed_loop", "users": users},
                     "prompt_tokens": {"kind": "uniform", "low": 50, "high": 400},
                     "output_tokens": {"kind": "uniform", "low": 10, "high": 80}, "num_requests": n},
        "servers": [server],
    })


def test_one_model_kept_forever_is_todays_server_after_its_first_load() -> None:
    spec = {"name": "o", "engine": "ollama", "version": "0.12.0", "frontend": NO_FRONT}
    multi = _scenario({**spec, "models": [{"model": "llama-3.1-8b", "weight": 1.0, "keep_alive_s": -1}]})
    load_s = resolve_models(multi.servers[0], HW)[0].load_s
    today = _scenario({**spec, "cold_start": True, "load_time_s": load_s, "keep_alive_s": math.inf})
    a = run_server(multi, 0)
    b = run_server(today, 0, fast=False)
    assert a.metrics.pop("loads") == 1 and a.metrics.pop("evictions") == 0
    assert a.metrics.pop("load_time_s") == load_s
    # equal up to the last bit of the clock (SimPy adds the waits from different bases)
    assert a.metrics.keys() == b.metrics.keys()
    for key, value in b.metrics.items():
        assert a.metrics[key] == pytest.approx(value, rel=1e-12, abs=1e-12, nan_ok=True), key
    np.testing.assert_allclose(a.recorder.first_token_s, b.recorder.first_token_s, rtol=1e-12)
    assert np.array_equal(a.recorder.status, b.recorder.status)


def _alternating(models: list[str], n: int, keep: float = -1.0) -> tuple[MultiModelServer, Recorder]:
    spec = OllamaSpec(name="o", version="0.12.0", frontend=NO_FRONT,
                      models=[{"model": m, "weight": 1 / len(models), "keep_alive_s": keep} for m in models])
    sc = _scenario(spec.model_dump(), users=1, n=n)
    workload = generate_workload(sc.workload, sc.seed, model_context_tokens=8192)
    runners = resolve_models(spec, HW)
    server = MultiModelServer(spec, runners, HW, np.arange(len(workload)) % len(models))
    return server, drive(server, workload, n)


def test_two_models_that_fit_never_evict() -> None:
    server, rec = _alternating(["llama-3.1-8b", "qwen2.5-3b"], 30)
    assert [r.loads for r in server.runners] == [1, 1]
    assert [r.evictions for r in server.runners] == [0, 0]
    assert np.all(rec.status[:30] == Status.COMPLETED)


def test_two_models_that_do_not_fit_pay_a_swap_per_request() -> None:
    n = 12
    server, rec = _alternating(["qwen2.5-32b", "qwen2.5-14b"], n)
    assert not server.runners[0].fits_gpu or server.runners[0].vram_bytes + server.runners[1].vram_bytes > HW.memory_bytes
    assert sum(r.loads for r in server.runners) == n
    assert sum(r.evictions for r in server.runners) == n - 1
    # each request waits for its model's load: TTFT >= its load time, from disk the first time,
    # from the page cache after (the host's 64 GiB hold both files)
    ttft = rec.first_token_s[:n] - rec.arrival_s[:n]
    runner = [server.runners[i % 2] for i in range(n)]
    loads = np.array([r.load_s if i < 2 else r.warm_load_s for i, r in enumerate(runner)])
    assert np.all(ttft >= loads)
    assert [r.warm_loads for r in server.runners] == [n // 2 - 1, n // 2 - 1]
    assert all(r.warm_load_s < r.load_s for r in server.runners)


def test_keep_alive_zero_reloads_after_every_idle_moment() -> None:
    server, _ = _alternating(["llama-3.1-8b"], 8, keep=0.0)
    assert server.runners[0].loads == 8 and server.runners[0].evictions == 0 and server.runners[0].expiries == 8


@pytest.mark.parametrize("cap", [1, 5])
def test_the_503_cap_holds_for_a_model_being_loaded(cap: int) -> None:
    burst = {"kind": "poisson", "rate_per_s": 1e6}  # every request within microseconds of the first
    sc = _scenario({"name": "o", "engine": "ollama", "version": "0.12.0", "max_queue": cap, "frontend": NO_FRONT,
                    "models": [{"model": "llama-3.1-8b", "weight": 1.0}]}, n=cap + 3, arrival=burst)
    result = run_server(sc, 0)
    status = result.recorder.status
    assert int(np.sum(status == Status.REJECTED)) == 3
    assert int(np.sum(status == Status.COMPLETED)) == cap


def test_a_loaded_model_is_never_refused() -> None:
    """Requests for a loaded model take the fast path: none reaches the pending queue's cap."""
    sc = _scenario({"name": "o", "engine": "ollama", "version": "0.12.0", "max_queue": 1, "frontend": NO_FRONT,
                    "models": [{"model": "llama-3.1-8b", "weight": 1.0, "keep_alive_s": -1}]},
                   n=60, arrival={"kind": "poisson", "rate_per_s": 2.0})
    result = run_server(sc, 0)
    rec, model = result.recorder, result.notes["models"]["llama-3.1-8b"]
    loaded_at = rec.arrival_s[0] + model["load_s_each"]
    rejected = rec.status[:60] == Status.REJECTED
    assert rejected.any() and np.all(rec.arrival_s[:60][rejected] < loaded_at)  # only while the first load runs
    assert model["loads"] == 1 and np.sum(rec.arrival_s[:60] > loaded_at) > 40


def test_per_model_results_add_up() -> None:
    sc = _scenario({"name": "o", "engine": "ollama", "version": "0.12.0", "frontend": NO_FRONT, "models": [
        {"model": "llama-3.1-8b", "weight": 0.7}, {"model": "qwen2.5-3b", "weight": 0.3}]}, n=50)
    result = run_server(sc, 0)
    models = result.notes["models"]
    assert sum(m["requests"] for m in models.values()) == 50
    assert sum(m["completed"] for m in models.values()) == result.metrics["completed"]
    whole = summarize(result.recorder, 0)
    assert whole["completed"] == result.metrics["completed"]


def test_bad_mixes_are_refused_with_a_fix() -> None:
    with pytest.raises(ValidationError, match="weights sum to 1.1, not 1; scale them"):
        OllamaSpec(models=[{"model": "llama-3.1-8b", "weight": 0.5}, {"model": "qwen2.5-3b", "weight": 0.6}])
    with pytest.raises(ValidationError, match="listed twice"):
        OllamaSpec(models=[{"model": "llama-3.1-8b", "weight": 0.5}, {"model": "llama-3.1-8b", "weight": 0.5}])
    with pytest.raises(EngineError, match="models:"):
        resolve_models(OllamaSpec(models=[{"model": "no-such-model", "weight": 1.0}]), HW)


def test_a_model_alone_may_be_split_with_the_cpu() -> None:
    """A model too big for the card loads alone, split with the CPU (part 1's offload)."""
    runners = resolve_models(OllamaSpec(models=[{"model": "llama-3.1-70b", "weight": 1.0}]), HW)
    assert not runners[0].fits_gpu and "split" in runners[0].resolved.notes
    assert resolve_server(OllamaSpec(), get_model("llama-3.1-70b"), HW).notes["split"] == runners[0].resolved.notes["split"]


def test_load_time_is_start_up_plus_bytes_over_the_slower_of_disk_and_loader() -> None:
    from sim.catalog import get_format
    from sim.multimodel import load_gb_s
    hdd = OllamaSpec(storage="hdd-7200", models=[{"model": "llama-3.1-8b", "weight": 1.0}])
    nvme = hdd.model_copy(update={"storage": "nvme-pcie5"})
    assert load_gb_s(hdd) == 0.16 and load_gb_s(nvme) == nvme.load_cap_gb_s
    bytes_ = get_model("llama-3.1-8b").weight_bytes(get_format("q4_k_m"))
    assert resolve_models(hdd, HW)[0].load_s == pytest.approx(hdd.startup_s + bytes_ / 0.16e9)
    with pytest.raises(EngineError, match="storage 'floppy' is not in the catalog; use one of hdd-7200"):
        resolve_models(hdd.model_copy(update={"storage": "floppy"}), HW)


@pytest.mark.parametrize("version", ["0.11.4", "0.12.0"])
def test_the_keep_alive_timer_starts_at_the_requests_end(version: str) -> None:
    """A runner with nothing else to wait for reports a request's end ahead of the clock; the
    keep_alive timer still starts at that end: a request 10 ms before it runs out finds the model
    loaded, one 10 ms after pays a second load."""
    from sim.metrics import end_times
    from sim.workload.table import Workload

    keep = 30.0

    def run(arrivals: list[float]) -> tuple[MultiModelServer, Recorder]:
        spec = OllamaSpec(name="o", version=version, frontend=NO_FRONT,
                          models=[{"model": "llama-3.1-8b", "weight": 1.0, "keep_alive_s": keep}])
        n = len(arrivals)
        workload = Workload(np.full(n, 100), np.full(n, 50), np.array(arrivals))
        server = MultiModelServer(spec, resolve_models(spec, HW), HW, np.zeros(n, dtype=int))
        recorder = drive(server, workload, n)
        return server, recorder

    _, alone = run([0.0])
    end = float(end_times(alone)[0])
    assert run([0.0, end + keep - 0.01])[0].runners[0].loads == 1
    assert run([0.0, end + keep + 0.01])[0].runners[0].loads == 2


def test_per_model_results_say_each_models_split() -> None:
    """A model bigger than the card is split with the CPU when loaded alone; the results say so as
    `ollama ps` does, beside "100% GPU" for a model that fits."""
    import re

    from sim.multimodel import simulate_models

    spec = OllamaSpec(name="o", version="0.12.0", frontend=NO_FRONT,
                      models=[{"model": "llama-3.1-8b", "weight": 0.5}, {"model": "llama-3.1-70b", "weight": 0.5}])
    n = 4
    workload = Workload(np.full(n, 100), np.full(n, 8), 60.0 * np.arange(n))
    _, per_model, _ = simulate_models(spec, HW, make_client(workload, n), n, seed=0)
    assert per_model["llama-3.1-8b"]["split"] == "100% GPU"
    assert re.fullmatch(r"\d+%/\d+% CPU/GPU", per_model["llama-3.1-70b"]["split"])
