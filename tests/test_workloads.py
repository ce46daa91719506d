"""Real workloads end to end: trace replay, load profiles, multi-turn sessions, prefix caches."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sim.scenario import load_scenario, parse_scenario, with_override
from sim.simulation import run_server, scenario_workload

ROOT = Path(__file__).resolve().parents[1]
TRACES = ROOT / "data" / "traces"


def _scenario(arrival: dict, servers: list[dict], hardware: str = "a100-80gb-sxm", **workload) -> object:
    return parse_scenario({
        "name": "w", "model": "llama-3.1-8b", "hardware": hardware,
        "workload": {"arrival": arrival, **workload},
        "servers": servers,
    })


VLLM = {"engine": "vllm", "max_model_len": 16384}


@pytest.mark.parametrize(
    ("path", "fmt"),
    [("azure_llm_2023/AzureLLMInferenceTrace_conv.csv", "azure2023"),
     ("vidur_splitwise/splitwise_conv.csv", "vidur"),
     ("mooncake_fast25/synthetic_trace.jsonl", "mooncake")],
)
def test_each_shipped_trace_replays_end_to_end(path: str, fmt: str) -> None:
    arrival = {"kind": "trace", "path": str(TRACES / path), "format": fmt, "limit": 300}
    server = {"engine": "vllm", "max_model_len": 131072} if fmt == "mooncake" else VLLM
    sc = _scenario(arrival, [server], hardware="h100-sxm", timeout_s=3600)
    result = run_server(sc)
    assert result.recorder.num_arrived == 300
    assert result.metrics["completed"] + result.metrics["cancelled"] == result.metrics["arrived"]
    again = run_server(sc)
    np.testing.assert_array_equal(result.recorder.finish_s, again.recorder.finish_s)


def test_azure_2024_layout_and_context_clipping(tmp_path: Path) -> None:
    # The 2024 week-long trace (not obtainable offline) has the 2023 columns with UTC timestamps.
    path = tmp_path / "AzureLLMInferenceTrace_conv_1week.csv"
    rows = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    rows += [f"2024-05-10 00:00:{s:02d}.123456+00:00,{200000 if s == 7 else 300 + s},{20 + s}" for s in range(40)]
    path.write_text("\n".join(rows))
    arrival = {"kind": "trace", "path": str(path), "format": "azure2024", "max_context_tokens": "model"}
    sc = _scenario(arrival, [{"engine": "vllm", "max_model_len": 131072}], hardware="h100-sxm")
    workload = scenario_workload(sc)
    assert workload.arrival_s[-1] == pytest.approx(39.0)
    assert int((workload.prompt_tokens + workload.output_tokens).max()) == 131072  # clipped to the model
    assert run_server(sc).metrics["completed"] > 30


def test_vidur_and_azure_copies_of_one_trace_replay_identically() -> None:
    def run(path: str) -> np.ndarray:
        arrival = {"kind": "trace", "path": str(TRACES / path), "window_s": [0, 300]}
        return run_server(_scenario(arrival, [VLLM])).recorder.first_token_s

    np.testing.assert_allclose(run("azure_llm_2023/AzureLLMInferenceTrace_conv.csv"),
                               run("vidur_splitwise/splitwise_conv.csv"), rtol=1e-6)


def test_burstgpt_and_vllm_bench_files_drive_a_run(tmp_path: Path) -> None:
    burst = tmp_path / "BurstGPT_1.csv"  # the real column layout (no real file can be shipped)
    rows = ["Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"]
    rows += [f"{t},ChatGPT,{100 + t},{0 if t % 7 == 3 else 40},0,Conversation log" for t in range(60)]
    burst.write_text("\n".join(rows) + "\n")
    result = run_server(_scenario({"kind": "trace", "path": str(burst)}, [VLLM]))
    assert result.recorder.num_arrived == 60 - 9  # failed rows (zero response tokens) dropped
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"request_rate": "inf", "burstiness": 1.0, "max_concurrency": 4,
                                 "input_lens": [200] * 30, "output_lens": [50] * 30, "ttfts": [0.1] * 30,
                                 "itls": [[]] * 30, "errors": [""] * 30}))
    lengths = {"kind": "empirical", "path": str(bench)}
    sc = _scenario({"kind": "closed_loop", "users": 4}, [VLLM], prompt_tokens=lengths, output_tokens=lengths,
                   num_requests=30)
    m = run_server(sc).metrics
    assert m["completed"] > 0 and m["total_output_tokens"] == 50 * m["completed"]


def test_real_bursty_trace_has_worse_tail_than_poisson_of_the_same_rate() -> None:
    # The Azure conversation hour vs a Poisson stream with the same mean rate and the same
    # (prompt, output) rows: the bursts queue up behind each other.
    conv = str(TRACES / "azure_llm_2023/AzureLLMInferenceTrace_conv.csv")
    trace = _scenario({"kind": "trace", "path": conv}, [VLLM])
    workload = scenario_workload(trace)
    n = len(workload)
    rate = n / float(workload.arrival_s[-1])
    lengths = {"kind": "empirical", "path": conv}
    poisson = _scenario({"kind": "poisson", "rate_per_s": rate}, [VLLM], prompt_tokens=lengths,
                        output_tokens=lengths, num_requests=n)
    t, p = run_server(trace).metrics, run_server(poisson).metrics
    assert t["request_throughput"] == pytest.approx(p["request_throughput"], rel=0.1)
    assert t["p99_ttft_ms"] > 3 * p["p99_ttft_ms"]


def _ideal_hit_rate(hash_ids) -> float:
    """Prompt blocks whose whole prefix was seen before, with a cache that never evicts."""
    seen: set[int] = set()
    hits = total = 0
    for ids in hash_ids:
        k = 0
        while k < len(ids) and ids[k] in seen:
            k += 1
        hits, total = hits + k, total + len(ids)
        seen.update(ids.tolist())
    return hits / total


def test_mooncake_prefix_cache_hits_and_helps() -> None:
    base = load_scenario(ROOT / "scenarios/traces/mooncake_conversation_prefix_cache.yaml")
    sc = with_override(base, "workload.arrival.limit", 600)
    cached, uncached = run_server(sc, 0), run_server(sc, 1)
    assert cached.metrics["prefix_cache_hit_rate"] > 0
    assert uncached.metrics["prefix_cache_hit_rate"] == 0
    assert cached.metrics["median_ttft_ms"] < uncached.metrics["median_ttft_ms"]
    # with a pool that never runs out, the hit rate reaches what the hash ids allow
    unlimited = run_server(with_override(sc, "servers.vllm-prefix-cache.num_gpu_blocks_override", 10**7), 0)
    ideal = _ideal_hit_rate(scenario_workload(sc).block_hashes)
    assert unlimited.metrics["prefix_cache_hit_rate"] >= 0.9 * ideal > 0.1


@pytest.mark.parametrize("server", [
    {"engine": "llama.cpp", "parallel": 2, "ctx_size": 32768},
    {"engine": "ollama", "num_parallel": 2, "num_ctx": 16384},
    {"engine": "vllm", "max_model_len": 16384},
], ids=["llama.cpp-slot-reuse", "ollama-slot-reuse", "vllm-prefix-cache"])
def test_multi_turn_conversations_reuse_their_history(server: dict) -> None:
    def run(turns: int):
        sc = _scenario({"kind": "closed_loop", "users": 2, "turns": turns, "think_time_s": 1.0}, [server],
                       hardware="rtx-4090", prompt_tokens={"kind": "fixed", "value": 300},
                       output_tokens={"kind": "fixed", "value": 100}, num_requests=60)
        return run_server(sc)

    multi, single = run(4), run(1)
    assert multi.metrics["prefix_cache_hit_rate"] > 0.3
    assert single.metrics["prefix_cache_hit_rate"] == 0
    prompts = multi.recorder.prompt_tokens
    assert prompts.max() == 300 * 4 + 100 * 3  # the 4th turn carries three turns of history


def test_ramp_rate_rises_linearly() -> None:
    sc = _scenario({"kind": "ramp", "start_rate_per_s": 1.0, "end_rate_per_s": 9.0, "duration_s": 2000},
                   [VLLM], prompt_tokens={"kind": "fixed", "value": 10}, output_tokens={"kind": "fixed", "value": 2})
    t = scenario_workload(sc).arrival_s
    # Lambda(t) = t + t^2/500: 3000 expected in the first half, 7000 in the second
    first, second = np.sum(t < 1000), np.sum(t >= 1000)
    assert first == pytest.approx(3000, abs=4 * np.sqrt(3000))
    assert second == pytest.approx(7000, abs=4 * np.sqrt(7000))


def test_gamma_burstiness_is_vllm_bench_definition() -> None:
    for k in (0.25, 1.0, 4.0):
        sc = _scenario({"kind": "gamma", "rate_per_s": 5.0, "burstiness": k}, [VLLM], num_requests=40_000,
                       prompt_tokens={"kind": "fixed", "value": 10}, output_tokens={"kind": "fixed", "value": 2})
        gaps = np.diff(scenario_workload(sc).arrival_s)
        assert np.mean(gaps) == pytest.approx(1 / 5.0, rel=0.03)
        assert np.std(gaps) / np.mean(gaps) == pytest.approx(1 / np.sqrt(k), rel=0.05)


def test_phases_follow_each_other() -> None:
    sc = _scenario({"kind": "phases", "phases": [{"duration_s": 100, "rate_per_s": 2}, {"duration_s": 100, "rate_per_s": 20}]},
                   [VLLM], prompt_tokens={"kind": "fixed", "value": 10}, output_tokens={"kind": "fixed", "value": 2})
    t = scenario_workload(sc).arrival_s
    assert np.sum(t < 100) == pytest.approx(200, abs=60) and np.sum(t >= 100) == pytest.approx(2000, abs=200)
