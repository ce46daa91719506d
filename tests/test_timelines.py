"""Exact timelines of tiny deterministic runs: every pass costs 1 s."""

from __future__ import annotations

import numpy as np

from sim.simulation import run_server
from tests.helpers import tiny_scenario

TWO_PER_S = {"kind": "constant", "rate_per_s": 2.0}  # arrivals at 0.0 and 0.5


def _timeline(result) -> list[tuple[int, float, float]]:
    rec = result.recorder
    return [(i, float(rec.first_token_s[i]), float(rec.finish_s[i])) for i in range(rec.num_arrived)]


def test_serial_decode_timeline() -> None:
    # One slot. Request 0: prefill 0-1 (first token), decodes 1-2 and 2-3. Request 1 arrives at
    # 0.5 and waits for the slot: prefill 3-4, decodes 4-5 and 5-6.
    result = run_server(tiny_scenario({"kind": "serial_decode", "parallel": 1}, arrival=TWO_PER_S))
    assert _timeline(result) == [(0, 1.0, 3.0), (1, 4.0, 6.0)]
    assert result.recorder.started_s.tolist() == [0.0, 3.0]


def test_single_queue_two_slots_timeline() -> None:
    # Two slots. Request 1 arrives at 0.5, mid-pass, and joins at the boundary at 1: its prompt
    # is read in pass 1-2 together with request 0's second token.
    result = run_server(tiny_scenario({"kind": "single_queue", "num_parallel": 2}, arrival=TWO_PER_S))
    assert _timeline(result) == [(0, 1.0, 3.0), (1, 2.0, 4.0)]


def test_paged_v1_timeline_matches_continuous_batching() -> None:
    result = run_server(tiny_scenario({"kind": "paged_batching", "num_kv_blocks": 64}, arrival=TWO_PER_S))
    assert _timeline(result) == [(0, 1.0, 3.0), (1, 2.0, 4.0)]


def test_paged_v0_prefill_first_stalls_decodes() -> None:
    # V0: at 1 the waiting prompt gets a prompt-only pass (1-2) and request 0's decode stalls.
    server = {"kind": "paged_batching", "num_kv_blocks": 64, "prefill_first": True, "enable_chunked_prefill": False}
    result = run_server(tiny_scenario(server, arrival=TWO_PER_S))
    assert _timeline(result) == [(0, 1.0, 4.0), (1, 2.0, 4.0)]


def test_paged_preemption_by_recompute_timeline() -> None:
    # 4 blocks of 2 tokens; two requests (prompt 2, output 5) arrive together.
    # 0-1: both prompts (1 block each), first tokens. 1-2: both need a 2nd block (pool now full).
    # 3-4: both need a 3rd block: request 1 (last admitted) is preempted, request 0 goes on alone
    # and no one is admitted in that pass. 4-5: request 0 finishes; request 1 must recompute
    # 2 + 3 tokens (3 blocks) but only 1 is free: head-of-line. 5-6: recompute, 4th token.
    # 6-7: 5th token.
    server = {"kind": "paged_batching", "num_kv_blocks": 4, "block_size": 2}
    sc = tiny_scenario(server, arrival={"kind": "closed_loop", "users": 2}, prompt=2, output=5)
    result = run_server(sc)
    assert _timeline(result) == [(0, 1.0, 5.0), (1, 1.0, 7.0)]
    assert result.recorder.num_preemptions.tolist() == [0, 1]
    assert result.metrics["num_preemptions"] == 1


def test_timeout_cancels_queued_and_running_requests() -> None:
    # Serial slot; 3 s timeout. Request 0 finishes at 3 (its deadline): completed. Request 1
    # arrives at 0.5, would start at 3, but its client leaves at 3.5: the engine frees the slot
    # at the next pass boundary (4); the record says timeout at 3.5 and no first token, since the
    # token sampled at 4 reached no one.
    sc = tiny_scenario({"kind": "serial_decode", "parallel": 1}, arrival=TWO_PER_S, timeout_s=3.0)
    rec = run_server(sc).recorder
    assert rec.status.tolist() == [1, 2]
    assert rec.finish_s.tolist() == [3.0, 3.5]
    assert np.isnan(rec.first_token_s[1])


def test_llama_cpp_stops_a_full_slot_and_ollama_shifts_it() -> None:
    # ctx 8 per slot, prompt 4, 10 tokens wanted. llama.cpp (no context shift) stops the slot
    # once 8 tokens are stored: 5 generated. Ollama shifts the context and delivers all 10.
    stop = run_server(tiny_scenario({"kind": "serial_decode", "ctx_size": 8}, output=10, num_requests=1))
    shift = run_server(tiny_scenario({"kind": "single_queue", "num_ctx": 8}, output=10, num_requests=1))
    assert stop.recorder.generated.tolist() == [5]
    assert shift.recorder.generated.tolist() == [10]
    assert shift.recorder.finish_s.tolist() == [10.0]
