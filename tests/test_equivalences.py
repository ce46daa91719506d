"""Degenerate configurations that must reproduce a simpler architecture exactly, and the
fast-forward loop against the one-pass-at-a-time reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.simulation import run_server
from tests.helpers import tiny_scenario

COLUMNS = ("arrival_s", "started_s", "first_token_s", "finish_s", "generated", "status", "num_preemptions")
LINEAR = {"kind": "linear", "overhead_s": 0.004, "prefill_s_per_token": 2e-5, "decode_s_per_seq": 4e-4,
          "attention_s_per_context_token": 3e-7}


def _assert_same_records(a, b, rtol: float = 0.0) -> None:
    for col in COLUMNS:
        x, y = getattr(a.recorder, col), getattr(b.recorder, col)
        if rtol:
            np.testing.assert_allclose(x, y, rtol=rtol, equal_nan=True, err_msg=col)
        else:
            np.testing.assert_array_equal(x, y, err_msg=col)


def _workload(seed: int, **kw):
    return dict(arrival={"kind": "poisson", "rate_per_s": 3.0}, prompt={"kind": "uniform", "low": 16, "high": 500},
                output={"kind": "uniform", "low": 1, "high": 200}, num_requests=300, seed=seed, **kw)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_sequence_paged_equals_one_slot_serial_equals_one_slot_single_queue(seed: int) -> None:
    paged = {"kind": "paged_batching", "max_num_seqs": 1, "num_kv_blocks": 10**6, "cost": LINEAR}
    serial = {"kind": "serial_decode", "parallel": 1, "ctx_size": 50_000, "cost": LINEAR}
    single = {"kind": "single_queue", "num_parallel": 1, "num_ctx": 50_000, "cost": LINEAR}
    a, b, c = (run_server(tiny_scenario(s, step_s=None, **_workload(seed))) for s in (paged, serial, single))
    assert a.metrics["completed"] > 200
    _assert_same_records(a, b)
    _assert_same_records(b, c)


def test_equivalence_holds_with_timeouts() -> None:
    paged = {"kind": "paged_batching", "max_num_seqs": 1, "num_kv_blocks": 10**6, "cost": LINEAR}
    serial = {"kind": "serial_decode", "parallel": 1, "ctx_size": 50_000, "cost": LINEAR}
    kw = _workload(5, timeout_s=4.0)
    kw["arrival"] = {"kind": "poisson", "rate_per_s": 6.0}
    a, b = (run_server(tiny_scenario(s, step_s=None, **kw)) for s in (paged, serial))
    assert a.metrics["timeouts"] > 0
    _assert_same_records(a, b)


SERVERS = st.sampled_from([
    {"kind": "paged_batching", "num_kv_blocks": 40, "block_size": 4, "max_num_seqs": 6, "max_num_batched_tokens": 64},
    {"kind": "paged_batching", "num_kv_blocks": 400, "block_size": 16, "max_num_seqs": 32},
    {"kind": "paged_batching", "num_kv_blocks": 60, "block_size": 4, "prefill_first": True,
     "enable_chunked_prefill": False, "max_num_batched_tokens": 4096},
    {"kind": "serial_decode", "parallel": 3, "ctx_size": 600, "batch_size": 48},
    {"kind": "serial_decode", "parallel": 3, "ctx_size": 300, "batch_size": 64, "kv_unified": True},
    {"kind": "single_queue", "num_parallel": 2, "num_ctx": 120, "num_batch": 32},
])


@given(
    server=SERVERS,
    seed=st.integers(0, 10_000),
    rate=st.floats(0.5, 40.0),
    closed=st.booleans(),
    timeout=st.one_of(st.none(), st.floats(0.5, 20.0)),
    roofline=st.booleans(),
)
def test_fast_forward_equals_stepping_one_pass_at_a_time(server, seed, rate, closed, timeout, roofline) -> None:
    arrival = {"kind": "closed_loop", "users": 5} if closed else {"kind": "poisson", "rate_per_s": rate}
    cost = {"kind": "roofline"} if roofline else LINEAR
    sc = tiny_scenario(
        {**server, "cost": cost}, step_s=None, arrival=arrival, seed=seed, timeout_s=timeout,
        prompt={"kind": "uniform", "low": 1, "high": 90}, output={"kind": "uniform", "low": 1, "high": 60},
        num_requests=40, hardware="rtx-4090",
    )
    fast, ref = run_server(sc, fast=True), run_server(sc, fast=False)
    _assert_same_records(fast, ref, rtol=1e-9)
    assert fast.recorder.num_passes == ref.recorder.num_passes
