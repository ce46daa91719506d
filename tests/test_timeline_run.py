"""Timelines (sim.results.timeline): a timeline run is the plain run, pass for pass.

* its metrics and records equal the plain run's bit for bit (the recording loop is a copy of
  the compiled one, held to it here);
* a fast-forwarded run expands into the passes that stepping one pass at a time takes;
* the passes and the requests' lives account for every token, every preemption and every end;
* the size limit refuses a large run with a message that names the limit and the fix.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest

from sim import ScenarioError, load_scenario, run_server, with_override
from sim.requests import Status
from sim.results import timeline as tl
from sim.results.timeline import (
    DECODE,
    EVENT_KINDS,
    PREFILL,
    QUEUED,
    record_server,
    record_timeline,
)
from tests.helpers import tiny_scenario

LINEAR = {"kind": "linear", "overhead_s": 0.004, "prefill_s_per_token": 2e-5, "decode_s_per_seq": 4e-4,
          "attention_s_per_context_token": 3e-7}
RECORD_COLUMNS = ("arrival_s", "started_s", "first_token_s", "finish_s", "prompt_tokens", "output_tokens",
                  "generated", "status", "cached_tokens", "num_preemptions")


def seed_at(users: int, requests: int = 60):
    sc = load_scenario("scenarios/seed_benchmark.yaml")
    sc = with_override(sc, "sweep", None)
    sc = with_override(sc, "workload.arrival.users", users)
    return with_override(sc, "workload.num_requests", requests)


def _tiny(server: dict, seed: int = 3, **kw):
    base = {"step_s": None, "arrival": {"kind": "poisson", "rate_per_s": 12.0}, "seed": seed,
                "prompt": {"kind": "uniform", "low": 1, "high": 90}, "output": {"kind": "uniform", "low": 1, "high": 60},
                "num_requests": 60, "hardware": "rtx-4090"}
    base.update(kw)
    return tiny_scenario(server, **base)


CASES = {
    "paged-preempting": _tiny({"kind": "paged_batching", "num_kv_blocks": 40, "block_size": 4, "max_num_seqs": 6,
                               "max_num_batched_tokens": 64, "cost": LINEAR}),
    "paged-roofline-timeouts": _tiny({"kind": "paged_batching", "num_kv_blocks": 400, "block_size": 16,
                                      "max_num_seqs": 32, "cost": {"kind": "roofline"}}, timeout_s=1.5,
                                     arrival={"kind": "poisson", "rate_per_s": 40.0}),
    "paged-v0": _tiny({"kind": "paged_batching", "num_kv_blocks": 60, "block_size": 4, "prefill_first": True,
                       "enable_chunked_prefill": False, "max_num_batched_tokens": 4096, "cost": LINEAR}),
    "slots": _tiny({"kind": "serial_decode", "parallel": 3, "ctx_size": 600, "batch_size": 48, "cost": LINEAR},
                   timeout_s=3.0),
    "slots-unified": _tiny({"kind": "serial_decode", "parallel": 3, "ctx_size": 300, "batch_size": 64,
                            "kv_unified": True, "cost": LINEAR}),
    "single-queue-closed": _tiny({"kind": "single_queue", "num_parallel": 2, "num_ctx": 120, "num_batch": 32,
                                  "cost": {"kind": "roofline"}}, arrival={"kind": "closed_loop", "users": 5}),
    "vllm-eagle3": _tiny({"engine": "vllm", "cost": {"kind": "roofline"}, "num_gpu_blocks_override": 300,
                          "max_model_len": 512, "speculative_config": {"method": "eagle3", "num_speculative_tokens": 3}},
                         arrival={"kind": "closed_loop", "users": 8}, hardware="h100-sxm"),
    "llama.cpp-draft": _tiny({"engine": "llama.cpp", "quantization": "q4_k_m", "parallel": 4, "cost": {"kind": "roofline"},
                              "model_draft": "llama-3.2-1b", "draft_max": 4}, timeout_s=4.0),
    "sampled-service": _tiny({"kind": "single_queue", "num_parallel": 2,
                              "cost": {"kind": "sampled", "distribution": {"kind": "exponential", "mean_s": 0.1}}}),
}


def _same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


@pytest.mark.parametrize("name", CASES)
def test_timeline_run_equals_plain_run_bit_for_bit(name: str) -> None:
    sc = CASES[name]
    plain, timeline = run_server(sc), record_server(sc)
    assert plain.metrics.keys() == timeline.result.metrics.keys()
    assert all(_same(plain.metrics[k], timeline.result.metrics[k]) for k in plain.metrics), name
    for col in RECORD_COLUMNS:
        np.testing.assert_array_equal(getattr(plain.recorder, col), getattr(timeline.result.recorder, col), err_msg=col)
    for x, y in zip(plain.recorder.itl_columns(), timeline.result.recorder.itl_columns(), strict=True):
        np.testing.assert_array_equal(x, y)
    assert plain.recorder.num_passes == timeline.result.recorder.num_passes
    assert plain.recorder.busy_s == timeline.result.recorder.busy_s


def test_seed_scenario_timeline_agrees_with_the_plain_run_on_every_metric() -> None:
    sc = seed_at(5)
    timeline = record_timeline(sc)
    assert [s.server for s in timeline.servers] == ["vllm", "ollama", "llama.cpp"]
    for i, s in enumerate(timeline.servers):
        plain = run_server(sc, i)
        assert all(_same(plain.metrics[k], s.result.metrics[k]) for k in plain.metrics), s.server
        assert s.num_passes == plain.recorder.num_passes


@pytest.mark.parametrize("name", [n for n in CASES if n != "sampled-service"])
def test_fast_forwarded_runs_expand_into_the_passes_of_stepping_one_at_a_time(name: str) -> None:
    fast, ref = record_server(CASES[name]), record_server(CASES[name], fast=False)
    assert fast.num_passes == ref.num_passes
    for col, values in fast.passes.items():
        if values.dtype.kind == "f":
            np.testing.assert_allclose(values, ref.passes[col], rtol=1e-9, err_msg=col)
        else:
            np.testing.assert_array_equal(values, ref.passes[col], err_msg=col)
    assert fast.chunks == ref.chunks


@pytest.mark.parametrize("name", CASES)
def test_passes_and_lives_account_for_every_token_preemption_and_end(name: str) -> None:
    s = record_server(CASES[name])
    rec, p, sp, ev = s.result.recorder, s.passes, s.spans, s.events
    n = rec.num_arrived
    # passes follow one another on the server's track, never overlapping
    assert np.all(p["start_s"][1:] >= p["end_s"][:-1]) and np.all(p["end_s"] >= p["start_s"])
    assert math.isclose(float(s.step_s.sum()), rec.busy_s, rel_tol=1e-9)
    # each token of a decode pass went to one member (plus the accepted drafts, when speculating);
    # each prompt token to one prefill span
    decoded = sp["tokens"][sp["kind"] == DECODE].sum()
    assert p["decode_seqs"].sum() <= decoded <= p["decode_seqs"].sum() + p["draft_tokens"].sum()
    assert (p["draft_tokens"].sum() == 0) == (decoded == p["decode_seqs"].sum())
    assert p["prompt_tokens"].sum() == sp["tokens"][sp["kind"] == PREFILL].sum()
    # every request ends once, when and how its record says
    ends = ev["kind"] > 0
    assert sorted(ev["request"][ends].tolist()) == list(range(n))
    order = np.argsort(ev["request"][ends])
    np.testing.assert_array_equal(ev["time_s"][ends][order], rec.finish_s)
    status = {name: i for i, name in enumerate(EVENT_KINDS)}
    expected = [status[Status(int(x)).name.lower()] for x in rec.status]
    assert ev["kind"][ends][order].tolist() == expected
    # preemptions: the pass counts, the request instants and the records agree
    preempted = ev["request"][ev["kind"] == 0]
    assert p["preemptions"].sum() == preempted.size == rec.num_preemptions.sum()
    # a life starts queued at its arrival, and its spans follow one another
    for r in range(n):
        mine = np.flatnonzero(sp["request"] == r)
        assert sp["kind"][mine[0]] == QUEUED and sp["start_s"][mine[0]] == rec.arrival_s[r]
        np.testing.assert_array_equal(sp["start_s"][mine[1:]], sp["end_s"][mine[:-1]])
        done = rec.status[r] == Status.COMPLETED and sp["kind"][mine[-1]] != tl.SERVICE
        if done:  # a prefill not cut by a preemption ends with a token; decoding gives the rest
            kinds = sp["kind"][mine]
            sampled = (kinds == PREFILL) & (np.append(kinds[1:], DECODE) != QUEUED)
            assert sp["end_s"][mine[sampled][0]] == rec.first_token_s[r]
            assert sp["tokens"][mine[kinds == DECODE]].sum() + sampled.sum() == rec.generated[r]
    if s.kv_capacity:
        assert 0 <= p["kv_used"].min() and p["kv_used"].max() <= s.kv_capacity


def test_preemptions_happen_with_the_kv_cache_full() -> None:
    s = record_server(CASES["paged-preempting"])
    pre = s.passes["preemptions"] > 0
    assert pre.sum() > 0
    # a pass preempts when its blocks (one per decoding sequence at most, plus a prompt chunk
    # of up to 64 tokens in blocks of 4) do not fit: the pass before left fewer than that free
    before = np.flatnonzero(pre) - 1
    assert np.all(s.kv_capacity - s.passes["kv_used"][before] < 6 + 64 // 4)
    assert s.kv_occupancy.max() == 1.0


def test_a_run_over_the_size_limit_is_refused_with_the_limit_and_the_fix() -> None:
    sc = with_override(seed_at(5), "workload.num_requests", tl.MAX_REQUESTS + 1)
    with pytest.raises(ScenarioError) as err:
        record_timeline(sc)
    text = str(err.value)
    assert f"{tl.MAX_REQUESTS:,}" in text and "--set workload.num_requests=" in text


def test_a_run_over_the_pass_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tl, "MAX_PASSES", 100)
    with pytest.raises(ScenarioError, match="more than 100 forward passes"):
        record_timeline(seed_at(5))


TWO_PER_S = {"kind": "constant", "rate_per_s": 2.0}  # arrivals at 0.0 and 0.5 (as tests/test_timelines.py)


def test_serial_decode_timeline_pass_by_pass() -> None:
    # every pass costs 1 s; one slot: request 0 reads its prompt in 0-1 and decodes in 1-2 and
    # 2-3 (one fast-forwarded run); request 1 arrives at 0.5, waits, and does the same from 3
    s = record_server(tiny_scenario({"kind": "serial_decode", "parallel": 1}, arrival=TWO_PER_S))
    p = s.passes
    assert list(zip(p["start_s"].tolist(), p["end_s"].tolist(), p["phase"].tolist(), strict=True)) == [
        (0.0, 1.0, tl.PREFILL_PASS), (1.0, 2.0, tl.DECODE_PASS), (2.0, 3.0, tl.DECODE_PASS),
        (3.0, 4.0, tl.PREFILL_PASS), (4.0, 5.0, tl.DECODE_PASS), (5.0, 6.0, tl.DECODE_PASS)]
    # (the queue when each pass ended: request 1 is admitted the moment the third one ends)
    assert p["prompt_tokens"].tolist() == [4, 0, 0, 4, 0, 0] and p["waiting"].tolist() == [1, 1, 0, 0, 0, 0]
    lives = [(r, tl.SPAN_KINDS[k], a, b, n) for r, k, a, b, n in zip(
        *(s.spans[c].tolist() for c in ("request", "kind", "start_s", "end_s", "tokens")), strict=True)]
    assert sorted(lives) == [(0, "decode", 1.0, 3.0, 2), (0, "prefill", 0.0, 1.0, 4), (0, "queued", 0.0, 0.0, 0),
                             (1, "decode", 4.0, 6.0, 2), (1, "prefill", 3.0, 4.0, 4), (1, "queued", 0.5, 3.0, 0)]


def test_paged_preemption_timeline_pass_by_pass() -> None:
    # tests/test_timelines.py's case: 4 blocks of 2 tokens, two users (prompt 2, output 5). 0-1
    # both prompts; 1-2 and 2-3 both decode (a second block each: the pool is full); at 3 both
    # need a third block and request 1, the last admitted, is preempted; 4-5 request 0 finishes
    # while request 1 (2 + 3 tokens to recompute) does not fit; 5-6 recompute; 6-7 5th token.
    server = {"kind": "paged_batching", "num_kv_blocks": 4, "block_size": 2}
    s = record_server(tiny_scenario(server, arrival={"kind": "closed_loop", "users": 2}, prompt=2, output=5))
    p = s.passes
    assert p["start_s"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert p["decode_seqs"].tolist() == [0, 2, 2, 1, 1, 0, 1]
    assert p["prompt_tokens"].tolist() == [4, 0, 0, 0, 0, 5, 0]
    assert p["kv_used"].tolist() == [2, 4, 4, 3, 0, 3, 0]
    assert p["preemptions"].tolist() == [0, 0, 0, 1, 0, 0, 0]
    lives = sorted((r, tl.SPAN_KINDS[k], a, b, n) for r, k, a, b, n in zip(
        *(s.spans[c].tolist() for c in ("request", "kind", "start_s", "end_s", "tokens")), strict=True)
        if r == 1)
    assert lives == [(1, "decode", 1.0, 3.0, 2), (1, "decode", 6.0, 7.0, 1), (1, "prefill", 0.0, 1.0, 2),
                     (1, "prefill", 5.0, 6.0, 5), (1, "queued", 0.0, 0.0, 0), (1, "queued", 3.0, 5.0, 0)]
    assert list(zip(s.events["request"].tolist(), s.events["kind"].tolist(), s.events["time_s"].tolist(),
                    strict=True)) == [(1, 0, 3.0), (0, 1, 5.0), (1, 1, 7.0)]  # preempted, completed, completed


def _method_lines(path: Path, cls: str, name: str) -> list[str]:
    """The body of ``cls.name`` in ``path``, one stripped line each, comments and blanks dropped
    (the signature too: it may be wrapped differently)."""
    source = path.read_text()
    method = next(f for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ClassDef) and node.name == cls
                  for f in node.body if isinstance(f, ast.FunctionDef) and f.name == name)
    lines = source.splitlines()[method.body[0].lineno - 1 : method.end_lineno]
    return [line for line in lines if line.strip() and not line.strip().startswith("#")]


def test_the_recording_loop_is_the_plain_loop_plus_its_marked_lines() -> None:
    root = Path(__file__).resolve().parents[1]
    plain = [line.split("  #")[0].strip().replace("self.", "server.")
             for line in _method_lines(root / "sim/servers/base.py", "IterationServer", "_loop")]
    copy = [line.split("  #")[0].strip().replace("server._admit(arrivals,", "server._admit(client.pop_arrivals(now),")
            for line in _method_lines(root / "sim/results/timeline.py", "_RecordingLoop", "_loop")
            if "# timeline" not in line]
    assert copy == plain, "IterationServer._loop changed: make _RecordingLoop._loop (sim/results/timeline.py) follow"
