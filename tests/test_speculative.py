"""Speculative decoding: exact equivalence with zero draft tokens, k + 1 tokens per step at
acceptance 1, the closed-form mean tokens per step, the engines' accounting (token budget, KV
lookahead, draft-min), and the speed-up against batch size that crosses below 1."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import simpy

from sim.recorder import Recorder
from sim.requests import Phase, Request, Status
from sim.scenario import ScenarioError
from sim.servers.paged import PagedPolicy
from sim.servers.speculative import (
    Acceptance,
    SpecPolicy,
    SpeculativePagedScheduler,
    mean_tokens_per_step,
)
from sim.shapes import BatchShape
from sim.simulation import _build, resolve_servers, run_server, scenario_workload, simulate
from sim.workload import make_client
from tests.helpers import assert_matches_theory, tiny_scenario

COLUMNS = ("arrival_s", "started_s", "first_token_s", "finish_s", "prompt_tokens", "output_tokens",
           "generated", "status", "cached_tokens", "num_preemptions")
ROOFLINE = {"kind": "roofline"}
VLLM = {"engine": "vllm", "cost": ROOFLINE}
LLAMA_CPP = {"engine": "llama.cpp", "quantization": "q4_k_m", "parallel": 4, "cost": ROOFLINE}


def _assert_identical(a: Recorder, b: Recorder) -> None:
    for col in COLUMNS:
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col), err_msg=col, strict=True)
    for x, y in zip(a.itl_columns(), b.itl_columns(), strict=True):
        np.testing.assert_array_equal(x, y)
    assert (a.now, a.busy_s, a.num_passes) == (b.now, b.busy_s, b.num_passes)


def _busy(server: dict, seed: int = 0, **kw: object):
    defaults: dict = {
        "step_s": None, "seed": seed, "arrival": {"kind": "poisson", "rate_per_s": 6.0}, "num_requests": 120,
        "prompt": {"kind": "uniform", "low": 8, "high": 700}, "output": {"kind": "uniform", "low": 1, "high": 150},
        "timeout_s": 30.0,
    }
    return tiny_scenario(server, **{**defaults, **kw})


# ---------------------------------------------------------------------------------------------
# k = 0 is no speculation
# ---------------------------------------------------------------------------------------------
ZERO = [
    (VLLM, {"speculative_config": {"method": "eagle3", "num_speculative_tokens": 0}}),
    (VLLM, {"speculative_config": {"method": "draft_model", "model": "llama-3.2-1b", "num_speculative_tokens": 0}}),
    (VLLM, {"speculative_config": {"method": "ngram", "num_speculative_tokens": 0}}),
    (LLAMA_CPP, {"model_draft": "llama-3.2-1b", "draft_max": 0}),
]


@pytest.mark.parametrize(("server", "option"), ZERO, ids=["vllm-eagle3", "vllm-draft", "vllm-ngram", "llama.cpp"])
def test_zero_draft_tokens_is_bit_identical_to_no_speculation(server: dict, option: dict) -> None:
    plain, spec = run_server(_busy(server)), run_server(_busy({**server, **option}))
    _assert_identical(plain.recorder, spec.recorder)
    assert plain.metrics == spec.metrics


PLAIN_SERVERS = [  # the rarer paths: preemption, a unified pool, context shifts, a full slot
    {"kind": "paged_batching", "num_kv_blocks": 40, "block_size": 4, "max_num_seqs": 6, "max_num_batched_tokens": 64},
    {"kind": "paged_batching", "num_kv_blocks": 400, "block_size": 16, "max_num_seqs": 32},
    {"engine": "vllm", "max_num_seqs": 8, "num_gpu_blocks_override": 30, "block_size": 16, "max_model_len": 480},
    {"kind": "serial_decode", "parallel": 3, "ctx_size": 600, "batch_size": 48},
    {"kind": "serial_decode", "parallel": 3, "ctx_size": 300, "batch_size": 64, "kv_unified": True},
    {"kind": "serial_decode", "parallel": 2, "ctx_size": 200, "batch_size": 64, "context_shift": True},
]


@pytest.mark.parametrize("server", PLAIN_SERVERS)
@pytest.mark.parametrize("seed", [0, 1])
def test_speculative_schedulers_with_no_drafts_equal_the_plain_ones(server: dict, seed: int) -> None:
    # Same decisions, same KV, same events when nothing is drafted: the speculative schedulers'
    # own bookkeeping (budget walk, blocks held per member, re-keying) against the plain ones,
    # both stepping one pass at a time.
    sc = tiny_scenario(
        {**server, "cost": ROOFLINE}, step_s=None, seed=seed, hardware="rtx-4090", timeout_s=12.0,
        arrival={"kind": "poisson", "rate_per_s": 5.0}, num_requests=60,
        prompt={"kind": "uniform", "low": 1, "high": 90}, output={"kind": "uniform", "low": 1, "high": 120},
    )
    resolved = resolve_servers(sc)[0]
    workload = scenario_workload(sc)
    spec = dataclasses.replace(resolved, speculative=SpecPolicy(0, ()))
    plain, drafted = simulate(sc, resolved, workload, fast=False), simulate(sc, spec, workload, fast=False)
    _assert_identical(plain, drafted)


# ---------------------------------------------------------------------------------------------
# Tokens per step
# ---------------------------------------------------------------------------------------------
def _one_request(server: dict, output: int):
    return tiny_scenario(server, prompt=4, output=output, num_requests=1, step_s=1.0)


ACCEPT_ALL = [
    lambda k: {"engine": "vllm", "speculative_config": {"method": "eagle3", "num_speculative_tokens": k,
                                                        "acceptance_rate": 1.0}},
    lambda k: {"engine": "vllm", "speculative_config": {"method": "ngram", "num_speculative_tokens": k,
                                                        "acceptance_rates": [1.0], "proposal_rate": 1.0}},
    lambda k: {"engine": "llama.cpp", "model_draft": "llama-3.2-1b", "draft_max": k, "draft_acceptance_rate": 1.0},
]


@pytest.mark.parametrize("make", ACCEPT_ALL, ids=["vllm-eagle3", "vllm-ngram", "llama.cpp"])
@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("output", [2, 17, 23])
def test_acceptance_one_gives_k_plus_one_tokens_per_step(make, k: int, output: int) -> None:
    # One pass (1 s) reads the prompt and samples the first token; then every pass emits k + 1.
    result = run_server(_one_request(make(k), output))
    rec = result.recorder
    steps = math.ceil((output - 1) / (k + 1))
    assert rec.status[0] == Status.COMPLETED and rec.generated[0] == output
    assert rec.num_passes == 1 + steps
    assert rec.finish_s[0] - rec.arrival_s[0] == pytest.approx(1.0 + steps)
    if "speculative_config" in make(k) and steps:
        assert result.metrics["spec_decode_acceptance_length"] == k + 1
        assert result.metrics["spec_decode_draft_acceptance_rate"] == 1.0


def test_acceptance_zero_gives_one_token_per_step_and_costs_more() -> None:
    base = run_server(tiny_scenario(VLLM, prompt=64, output=200, num_requests=1, step_s=None))
    spec = run_server(tiny_scenario(
        {**VLLM, "speculative_config": {"method": "eagle3", "num_speculative_tokens": 3, "acceptance_rate": 0.0}},
        prompt=64, output=200, num_requests=1, step_s=None))
    assert spec.recorder.num_passes == base.recorder.num_passes == 200
    assert spec.recorder.finish_s[0] > base.recorder.finish_s[0]
    assert spec.metrics["output_throughput"] < base.metrics["output_throughput"]


@pytest.mark.parametrize("a", [0.3, 0.6, 0.8, 0.95])
@pytest.mark.parametrize("k", [1, 3, 7])
def test_mean_tokens_per_step_matches_the_closed_form(a: float, k: int) -> None:
    closed = (1 - a ** (k + 1)) / (1 - a)
    survival = tuple(a**i for i in range(1, k + 1))
    assert mean_tokens_per_step(survival) == pytest.approx(closed)
    draws = 20_000
    acceptance = Acceptance(SpecPolicy(k, survival), seed=k * 100 + int(a * 100))
    tokens = np.array([acceptance.accept(k) + 1 for _ in range(draws)], dtype=float)
    assert abs(tokens.mean() - closed) <= 4 * tokens.std() / math.sqrt(draws) + 1e-12
    assert acceptance.acceptance_length == pytest.approx(tokens.mean())
    per_position = np.array(acceptance.accepted_per_position) / acceptance.num_drafts  # vLLM's metric
    assert np.allclose(per_position, survival, atol=4 * math.sqrt(0.25 / draws))


@pytest.mark.parametrize("engine", ["vllm", "llama.cpp"])
def test_a_long_request_gains_the_closed_form_tokens_per_step(engine: str) -> None:
    # 2001 tokens: 1 from the prompt pass, 2000 from decode steps of mean (1 - a^(k+1))/(1 - a);
    # only the last step is clipped, a bias below 0.1 %.
    a, k = 0.7, 4
    server = ({"engine": "vllm", "speculative_config": {"method": "draft_model", "model": "llama-3.2-1b",
                                                        "num_speculative_tokens": k, "acceptance_rate": a}}
              if engine == "vllm" else
              {"engine": "llama.cpp", "model_draft": "llama-3.2-1b", "draft_max": k, "draft_acceptance_rate": a})
    per_step = []
    for seed in range(6):
        rec = run_server(tiny_scenario(server, prompt=4, output=2001, num_requests=1, step_s=1.0, seed=seed)).recorder
        per_step.append(2000 / (rec.num_passes - 1))
    assert_matches_theory(per_step, (1 - a ** (k + 1)) / (1 - a), z=4.0, rel_bias=0.002)


def test_same_seed_same_results_and_another_seed_differs() -> None:
    server = {**VLLM, "speculative_config": {"method": "eagle3", "num_speculative_tokens": 3}}
    a, b, c = run_server(_busy(server)), run_server(_busy(server)), run_server(_busy(server, seed=1))
    _assert_identical(a.recorder, b.recorder)
    assert not np.array_equal(a.recorder.finish_s, c.recorder.finish_s)


# ---------------------------------------------------------------------------------------------
# The engines' accounting
# ---------------------------------------------------------------------------------------------
def test_vllm_drafts_use_the_token_budget_in_admission_order_never_the_sampled_token() -> None:
    # 4 decoding requests, budget 10: 4 sampled tokens + 6 drafts (3, 3, 0, 0); nothing is left
    # for the waiting fifth request's prompt. KV: 1 + k verified tokens + k lookahead slots.
    policy = PagedPolicy(num_blocks=100, block_size=4, max_num_seqs=4, max_num_batched_tokens=10,
                         enable_prefix_caching=False)
    sched = SpeculativePagedScheduler(policy, SpecPolicy(3, (1.0, 1.0, 1.0), lookahead=3), seed=0)
    requests = [Request(i, 0.0, 2, 50) for i in range(5)]
    for r in requests:
        sched.add(r, 0.0)
    first = sched.schedule(0.0)
    assert first is not None and [c for _, c in first.chunks] == [2, 2, 2, 2]
    sched.complete(first, 1.0)
    step = sched.schedule(1.0)
    assert step is not None and step.chunks == [] and step.drafts is not None
    assert [k for _, k in step.drafts.members] == [3, 3, 0, 0]
    assert step.shape().num_tokens == 10
    # stored 2 tokens: 2 + 1 + 3 + 3 = 9 -> 3 blocks; 2 + 1 + 0 + 3 = 6 -> 2 blocks
    assert [r.blocks for r in requests[:4]] == [3, 3, 2, 2] and requests[4].phase == Phase.QUEUED
    sched.complete(step, 2.0)
    assert [sched.decode.generated(r) for r in requests[:4]] == [5, 5, 2, 2]


def test_llama_cpp_drops_drafts_shorter_than_draft_min() -> None:
    # 7 tokens: the first from the prompt pass, then drafts of min(4, left - 1): 4 (accepted,
    # 5 tokens), then 0 < draft_min 2 with 1 token left: one plain step. 3 passes.
    server = {"engine": "llama.cpp", "model_draft": "llama-3.2-1b", "draft_max": 4, "draft_min": 2,
              "draft_acceptance_rate": 1.0}
    assert run_server(_one_request(server, 7)).recorder.num_passes == 3
    # draft_min 0: 1 + 4 + ... left 1 -> no draft possible either (k = left - 1 = 0): still 3
    server["draft_min"] = 0
    assert run_server(_one_request(server, 7)).recorder.num_passes == 3
    # 8 tokens: 1, then 5, then 2 left -> draft 1 >= 0 accepted: 3 passes; with draft_min 2: 4
    assert run_server(_one_request(server, 8)).recorder.num_passes == 3
    server["draft_min"] = 2
    assert run_server(_one_request(server, 8)).recorder.num_passes == 4


@pytest.mark.parametrize("blocks", [40, 400])
def test_kv_pool_is_whole_again_after_a_speculative_run(blocks: int) -> None:
    # Lookahead and rejected drafts hold blocks beyond the stored tokens; preemption and the
    # end of every request must give them all back.
    server = {"engine": "vllm", "num_gpu_blocks_override": blocks, "block_size": 16, "max_model_len": 640,
              "cost": ROOFLINE, "speculative_config": {"method": "eagle3", "num_speculative_tokens": 4}}
    sc = _busy(server, prompt={"kind": "uniform", "low": 8, "high": 400}, num_requests=150, timeout_s=15.0)
    resolved = resolve_servers(sc)[0]
    workload = scenario_workload(sc)
    env, rec = simpy.Environment(), Recorder(len(workload))
    server_ = _build(resolved, workload, True, sc.seed)
    server_.start(env, make_client(workload, sc.workload.num_requests), rec)
    env.run()
    scheduler = server_.scheduler
    assert scheduler.pool.num_free == scheduler.pool.num_blocks
    assert not scheduler.running and scheduler.decode.num_seqs == 0
    if blocks == 40:
        assert rec.num_preemptions.sum() > 0


# ---------------------------------------------------------------------------------------------
# Speed-up against batch size
# ---------------------------------------------------------------------------------------------
def _throughput(server: dict, users: int, seed: int) -> float:
    sc = tiny_scenario(server, step_s=None, seed=seed, arrival={"kind": "closed_loop", "users": users},
                       prompt=256, output=128, num_requests=max(40, 3 * users), warmup=users)
    return run_server(sc).metrics["output_throughput"]


def test_one_user_speedup_is_tokens_per_step_times_the_pass_time_ratio() -> None:
    # One request at a time: the decode-time ratio is E[A + 1] x t_decode / t_speculative_step
    # (Leviathan et al.'s wall-time factor, with this cost model's pass times at the run's mean
    # context; the pass time is affine in the context, so the mean context gives the mean time).
    prompt, output = 256, 1025
    spec_server = {**VLLM, "speculative_config": {"method": "eagle3", "num_speculative_tokens": 3}}

    def one(server: dict, seed: int = 0):
        return tiny_scenario(server, prompt=prompt, output=output, num_requests=1, step_s=None, seed=seed)

    resolved = resolve_servers(one(spec_server))[0]
    assert resolved.speculative is not None and resolved.cost is not None
    c = prompt + output / 2
    t_decode = resolved.cost.step_time(BatchShape(num_decode_seqs=1, num_context_tokens=int(c)))
    t_spec = resolved.cost.step_time(BatchShape(
        num_decode_seqs=1, num_context_tokens=int(c), num_spec_tokens=3, spec_attention_pairs=3 * c + 6,
        num_drafting_seqs=1, draft_depth=3, drafting_context_tokens=int(c)))
    expected = mean_tokens_per_step(resolved.speculative.accept_at_least) * t_decode / t_spec
    base = run_server(one(VLLM)).recorder
    base_decode = base.finish_s[0] - base.first_token_s[0]
    ratios = []
    for seed in range(5):
        rec = run_server(one(spec_server, seed)).recorder
        ratios.append(base_decode / (rec.finish_s[0] - rec.first_token_s[0]))
    assert_matches_theory(ratios, expected, z=4.0, rel_bias=0.01)


def test_speedup_shrinks_and_reverses_as_batches_grow() -> None:
    # vLLM, Llama-3.1-8B bf16 on an H100 with an EAGLE-3 head (k = 3, vLLM's published
    # acceptance): at one user the verification pass costs about a decode pass and 2.6 tokens
    # come out; at 512 users the 4 x 512 verified tokens make the pass compute-bound.
    spec = {**VLLM, "speculative_config": {"method": "eagle3", "num_speculative_tokens": 3}}
    speedups = {users: [_throughput(spec, users, s) / _throughput(VLLM, users, s) for s in range(3)]
                for users in (1, 16, 512)}
    assert min(speedups[1]) > 1.3
    assert max(speedups[512]) < 1.0
    assert np.mean(speedups[1]) > np.mean(speedups[16]) > np.mean(speedups[512])


def test_dynamic_draft_length_keeps_the_low_load_gain_and_drops_the_high_load_loss() -> None:
    # vLLM's num_speculative_tokens_per_batch_size: 3 drafts up to 64 running requests, none above.
    static = {**VLLM, "speculative_config": {"method": "eagle3", "num_speculative_tokens": 3}}
    dynamic = {**VLLM, "speculative_config": {"method": "eagle3", "num_speculative_tokens": 3,
                                              "num_speculative_tokens_per_batch_size": [[1, 64, 3], [65, 4096, 0]]}}
    assert _throughput(dynamic, 1, 0) == _throughput(static, 1, 0)
    base, fixed, adaptive = (_throughput(s, 512, 0) for s in (VLLM, static, dynamic))
    assert fixed < base and adaptive > fixed and adaptive == pytest.approx(base, rel=0.02)


def test_a_batch_table_of_zeros_is_no_speculation() -> None:
    # n-gram (free drafting, no KV lookahead) with k = 0 at every batch size: the same run as
    # without speculation, to rounding (every pass is priced whole instead of as a decode line).
    server = {**VLLM, "max_num_seqs": 16}
    option = {"speculative_config": {"method": "ngram", "num_speculative_tokens": 4,
                                     "num_speculative_tokens_per_batch_size": [[1, 16, 0]]}}
    plain, spec = run_server(_busy(server), fast=False), run_server(_busy({**server, **option}), fast=False)
    for col in COLUMNS:
        np.testing.assert_allclose(getattr(plain.recorder, col), getattr(spec.recorder, col), rtol=1e-9,
                                   equal_nan=True, err_msg=col)
    assert spec.metrics["spec_decode_num_drafts"] == 0


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------
BAD = [
    ({"engine": "vllm", "speculative_config": {"method": "draft_model", "num_speculative_tokens": 3}}, "needs model"),
    ({"engine": "vllm", "speculative_config": {"num_speculative_tokens": 3}}, "set method"),
    ({"engine": "vllm", "speculative_config": {"method": "draft_model", "model": "no-such-model",
                                               "num_speculative_tokens": 3}}, "no-such-model"),
    ({"engine": "vllm", "speculative_config": {"method": "eagle", "num_speculative_tokens": 3,
                                               "acceptance_rates": [0.5, 0.7]}}, "cannot increase"),
    ({"engine": "vllm", "speculative_config": {"method": "eagle", "num_speculative_tokens": 40}}, "num_speculative_tokens"),
    ({"engine": "vllm", "version": "0.6.0", "speculative_config": {"method": "ngram", "num_speculative_tokens": 3}},
     "version >= 0.8"),
    ({"engine": "vllm", "speculative_config": {"method": "eagle", "num_speculative_tokens": 2,
                                               "num_speculative_tokens_per_batch_size": [[1, 8, 3]]}}, "per_batch_size"),
    ({"engine": "llama.cpp", "draft_max": 4}, "need model_draft"),
    ({"engine": "ollama", "model_draft": "llama-3.2-1b"}, "unknown field"),
]


@pytest.mark.parametrize(("server", "message"), BAD)
def test_bad_speculative_options_get_a_clean_error(server: dict, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        run_server(tiny_scenario(server))
