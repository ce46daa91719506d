"""Front-end costs (sim/frontend.py): tied to the engine-only run and to queueing theory."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from calibration.fit_frontend import _floored, fit_frontend, frontend_points, http_floor
from sim.engines import resolve_server
from sim.frontend import FRONTEND_NONE, load_frontend_profiles, select_frontend
from sim.scenario import ScenarioError
from sim.simulation import run_server
from sim.theory import md1
from tests.helpers import assert_matches_theory, tiny_scenario

COLUMNS = ("arrival_s", "started_s", "first_token_s", "finish_s", "generated", "status")
LINEAR = {"kind": "linear", "overhead_s": 0.004, "prefill_s_per_token": 2e-5, "decode_s_per_seq": 4e-4}


def _run(server: dict, **kw):
    return run_server(tiny_scenario(server, step_s=None, **kw))


def test_zero_front_end_reproduces_the_engine_alone_bit_for_bit() -> None:
    server = {"kind": "serial_decode", "parallel": 2, "ctx_size": 4096, "cost": LINEAR}
    kw = {"arrival": {"kind": "poisson", "rate_per_s": 20.0}, "prompt": {"kind": "uniform", "low": 8, "high": 300},
              "output": {"kind": "uniform", "low": 1, "high": 60}, "num_requests": 200, "seed": 3}
    bare = _run(server, **kw)
    zero = _run({**server, "frontend": {"request_s": 0.0, "token_s": 0.0}}, **kw)
    for col in COLUMNS:
        np.testing.assert_array_equal(getattr(bare.recorder, col), getattr(zero.recorder, col), err_msg=col)
    assert "frontend" not in zero.notes


@pytest.mark.parametrize("serial", [False, True])
def test_a_constant_delay_adds_exactly_to_ttft_and_e2e_at_zero_load_and_leaves_tpot(serial: bool) -> None:
    server = {"kind": "serial_decode", "parallel": 1, "ctx_size": 4096, "cost": LINEAR}
    kw = {"arrival": {"kind": "constant", "rate_per_s": 0.5}, "prompt": 100, "output": 20, "num_requests": 20}
    bare = _run(server, **kw)
    c = 0.0375
    delayed = _run({**server, "frontend": {"request_s": c, "serial": serial}}, **kw)
    a, b = bare.recorder, delayed.recorder
    np.testing.assert_array_equal(a.arrival_s, b.arrival_s)
    np.testing.assert_allclose(b.first_token_s - b.arrival_s, a.first_token_s - a.arrival_s + c, rtol=0, atol=1e-12)
    np.testing.assert_allclose(b.finish_s - b.arrival_s, a.finish_s - a.arrival_s + c, rtol=0, atol=1e-12)
    assert delayed.metrics["mean_tpot_ms"] == pytest.approx(bare.metrics["mean_tpot_ms"], rel=1e-12)


def test_closed_loop_user_pays_the_delay_on_every_request() -> None:
    server = {"kind": "serial_decode", "parallel": 1, "ctx_size": 4096, "cost": LINEAR}
    kw = {"arrival": {"kind": "closed_loop", "users": 1, "think_time_s": 0}, "prompt": 64, "output": 16, "num_requests": 30}
    bare, delayed = _run(server, **kw), _run({**server, "frontend": {"request_s": 0.01}}, **kw)
    per_request = np.diff(bare.recorder.arrival_s).mean()
    assert np.diff(delayed.recorder.arrival_s).mean() == pytest.approx(per_request + 0.01, rel=1e-9)


def test_in_engine_token_cost_lengthens_every_single_sequence_step_by_it() -> None:
    server = {"engine": "llama.cpp", "version": "b6000", "parallel": 1, "quantization": "f16",
              "frontend": {"profile": "none"}}
    kw = {"arrival": {"kind": "closed_loop", "users": 1, "think_time_s": 0}, "prompt": 64, "output": 32, "num_requests": 8,
              "model": "llama-3.2-1b", "hardware": "rtx-4090"}
    bare = _run(server, **kw)
    taxed = _run({**server, "frontend": {"profile": "none", "token_s": 0.002}}, **kw)
    assert taxed.metrics["mean_tpot_ms"] - bare.metrics["mean_tpot_ms"] == pytest.approx(2.0, rel=1e-6)


def test_serial_front_end_queues_like_md1() -> None:
    """Requests reach the engine through one FIFO worker of d seconds: with an engine that takes
    (almost) no time, the wait for the worker is M/D/1's Wq."""
    d, rate = 0.01, 70.0
    server = {"kind": "paged_batching", "num_kv_blocks": 10**5, "max_num_seqs": 512,
              "cost": {"kind": "constant", "step_s": 1e-9}, "frontend": {"request_s": d, "serial": True}}
    waits = []
    for seed in range(6):
        res = _run(server, arrival={"kind": "poisson", "rate_per_s": rate}, prompt=4, output=1,
                   num_requests=3000, seed=seed, warmup=300)
        r = res.recorder
        waits.append(float(np.mean((r.first_token_s - r.arrival_s)[300:])) - d)
    assert_matches_theory(waits, md1(rate, d).wait_s, rel_bias=0.05)


@pytest.mark.parametrize("request_s", [0.0, 1e-4])
def test_users_started_together_reach_a_serial_front_end_one_by_one(request_s: float) -> None:
    """12 users send 256-token prompts at t = 0 to a 2048-token budget. Through a zero-cost front
    end they arrive together and the first pass prefills 8 prompts; through one FIFO worker of
    any positive cost they arrive one by one, and the idle engine starts on the first alone (as
    vLLM's engine core does: its API process hands requests over one at a time)."""
    server = {"kind": "paged_batching", "num_kv_blocks": 10**4, "max_num_seqs": 16, "max_num_batched_tokens": 2048,
              "cost": LINEAR, "frontend": {"request_s": request_s, "serial": True}}
    res = _run(server, arrival={"kind": "closed_loop", "users": 12, "think_time_s": 0}, prompt=256, output=4,
               num_requests=12)
    r = res.recorder
    first = int(np.argmin(r.first_token_s))
    together = 8 if request_s == 0 else 1
    assert r.first_token_s[first] == pytest.approx(request_s + 0.004 + 2e-5 * 256 * together, rel=1e-9)
    assert int(np.sum(r.first_token_s == r.first_token_s[first])) == together


def test_a_machine_request_point_is_at_least_its_measured_http_floor() -> None:
    floor = http_floor("vllm", "epyc-zen4-2c-vm")
    assert floor is not None and floor[0] > 0
    points = [p for p in frontend_points() if p.engine == "vllm" and p.quantity == "request_s"]
    floored = [p for p in points if http_floor(p.engine, p.hardware) is not None]
    assert floored and all(p.value_s >= http_floor(p.engine, p.hardware)[0] for p in floored)
    below = replace(floored[0], value_s=-0.003, formula="x")
    above = replace(floored[0], value_s=floor[0] + 0.002, formula="y")
    assert _floored(below).value_s == floor[0] and "HTTP round trip" in _floored(below).formula
    assert _floored(above) == above
    other = replace(below, hardware="epyc-zen5-2c-vm")  # no floor measured there: left as it is
    assert _floored(other) == other


def test_engine_presets_get_the_fitted_front_end_and_say_so() -> None:
    res = _run({"engine": "vllm", "version": "0.11.0"}, arrival={"kind": "constant", "rate_per_s": 1.0},
               num_requests=3, model="llama-3.2-1b", hardware="h100-sxm")
    assert res.notes["frontend"].startswith("frontend-vllm-gpu")
    bare_kind = _run({"kind": "paged_batching", "num_kv_blocks": 1000}, model="llama-3.2-1b", num_requests=3)
    assert "frontend" not in bare_kind.notes


def test_selection_by_engine_and_hardware_class() -> None:
    assert select_frontend("llama.cpp", "b6000", "cpu").id == "frontend-llama.cpp-cpu"
    assert select_frontend("llama.cpp", "b6000", "consumer_gpu").id == "frontend-llama.cpp-gpu"
    assert select_frontend("ollama", "0.12.0", "laptop_gpu").id == "frontend-ollama-gpu"
    assert select_frontend("single_queue", "", "cpu") is FRONTEND_NONE
    # a machine's own server runs outrank the pooled class profile there, and only there
    own = select_frontend("llama.cpp", "b6000", "cpu", hardware_id="epyc-zen4-2c-vm")
    assert own.id == "frontend-llama.cpp-epyc-zen4-2c-vm"
    assert select_frontend("llama.cpp", "b6000", "cpu", hardware_id="cpu-generic-16c").id == "frontend-llama.cpp-cpu"
    assert select_frontend("ollama", "0.12.0", "cpu", hardware_id="epyc-zen4-2c-vm").id == "frontend-ollama-cpu"
    with pytest.raises(ValueError, match="unknown front-end profile 'nope'; known: none"):
        select_frontend("vllm", "0.11.0", "cpu", "nope")


def test_unknown_profile_is_a_clean_error() -> None:
    with pytest.raises(ScenarioError, match=r"servers.0: server 'vllm': frontend.profile: unknown front-end profile"):
        _run({"engine": "vllm", "frontend": {"profile": "nope"}}, model="llama-3.2-1b")


def test_every_fitted_number_has_provenance_and_matches_the_shipped_file() -> None:
    shipped = {p.cost.id: p for p in load_frontend_profiles()}
    for entry in fit_frontend():
        prof = shipped[entry["id"]]
        for q in ("request_s", "token_s", "step_s"):
            assert getattr(prof.cost, q) == pytest.approx(entry[q], abs=1e-9), (entry["id"], q)
            prov = prof.provenance[q]
            if isinstance(prov, str):  # no points: zero, and the reason is written
                assert entry[q] == 0.0, (entry["id"], q)
            else:  # the value is the median of its points, clipped at zero (a machine can measure no overhead)
                assert prov and all(p["source"] and p["hardware"] and p["date"] and p["formula"] for p in prov)
                median = float(np.median([p["value_s"] for p in prov]))
                assert entry[q] == pytest.approx(max(0.0, median), abs=2e-6), (entry["id"], q)


def test_front_end_points_never_come_from_validation_data() -> None:
    for p in frontend_points():
        assert "validation" not in p.source and "llama_cpp_python_server" not in p.source


def test_resolved_roofline_carries_the_in_engine_part() -> None:
    from sim.catalog import get_hardware, get_model
    from sim.scenario import LlamaCppSpec

    hw, model = get_hardware("epyc-zen5-2c-vm"), get_model("smollm2-135m")
    base = resolve_server(LlamaCppSpec(quantization="f16", threads=1, frontend={"profile": "none"}), model, hw)
    fitted = resolve_server(LlamaCppSpec(quantization="f16", threads=1), model, hw)
    assert fitted.cost.seq_overhead_s - base.cost.seq_overhead_s == pytest.approx(fitted.frontend.token_s)
    assert fitted.frontend.token_s > 0



def test_any_cost_carries_the_in_engine_part_as_a_roofline_does() -> None:
    """The generic wrapper (tensor/pipeline parallel, MoE, expert offload, constant costs) adds
    exactly what the roofline's own overhead fields add, pass by pass and on decode lines."""
    from dataclasses import replace

    from sim.catalog import get_hardware, get_model
    from sim.engines.resolve import WithInEngineFrontend
    from sim.scenario import LlamaCppSpec
    from sim.shapes import BatchShape

    hw, model = get_hardware("epyc-zen5-2c-vm"), get_model("smollm2-135m")
    base = resolve_server(LlamaCppSpec(quantization="f16", threads=1, frontend={"profile": "none"}), model, hw).cost
    token_s, step_s = 0.0007, 0.0003
    fields = replace(base, seq_overhead_s=base.seq_overhead_s + token_s, step_overhead_s=base.step_overhead_s + step_s)
    wrapped = WithInEngineFrontend(base, token_s, step_s, base.max_pass_tokens)
    shapes = [BatchShape(num_decode_seqs=d, num_context_tokens=300 * d, num_prefill_seqs=p, num_prefill_tokens=t)
              for d, p, t in ((1, 0, 0), (8, 0, 0), (3, 1, 700), (0, 2, 1500))]
    for shape in shapes:
        assert wrapped.step_time(shape) == pytest.approx(fields.step_time(shape), rel=1e-12)
    for n in (1, 7, 64):
        assert wrapped.decode_line(n).at(5000) == pytest.approx(fields.decode_line(n).at(5000), rel=1e-12)


def test_a_tensor_parallel_server_gets_the_in_engine_part_too() -> None:
    from sim.catalog import get_model, resolve_hardware
    from sim.engines.resolve import WithInEngineFrontend
    from sim.scenario import VllmSpec
    from sim.shapes import BatchShape

    hw, model = resolve_hardware("8x h100-sxm"), get_model("llama-3.1-70b")
    bare = resolve_server(VllmSpec(tensor_parallel_size=4, frontend={"profile": "none"}), model, hw)
    front = resolve_server(VllmSpec(tensor_parallel_size=4, frontend={"token_s": 0.001, "step_s": 0.002}), model, hw)
    assert isinstance(front.cost, WithInEngineFrontend) and "not applied" not in front.notes["frontend"]
    shape = BatchShape(num_decode_seqs=16, num_context_tokens=16 * 1000)
    assert front.cost.step_time(shape) - bare.cost.step_time(shape) == pytest.approx(0.002 + 16 * 0.001)


SINGLE_STREAM = {  # calibration rows -> the server spec that ran them
    "np1_t1": {"engine": "llama.cpp", "parallel": 1, "quantization": "f16", "threads": 1},
    "np1_t2": {"engine": "llama.cpp", "parallel": 1, "quantization": "f16", "threads": 2},
    "np1_t1_bf16": {"engine": "llama.cpp", "parallel": 1, "quantization": "bf16", "threads": 1},
    "vllm_cpu_t1": {"engine": "vllm", "version": "0.32.0", "dtype": "bfloat16", "threads": 1, "max_num_seqs": 16,
                    "max_num_batched_tokens": 2048, "max_model_len": 1024},
}


@pytest.mark.parametrize("tag", list(SINGLE_STREAM))
def test_single_user_server_runs_are_reproduced_within_the_machine_drift(tag: str) -> None:
    """The calibration rows the front end was fitted on (engine's own bench subtracted, so the
    cost profile is not involved in the fit): TTFT, TPOT and e2e within 10 % (the machine drifts
    ±8 %); the front end adds exactly its request time to the engine-alone TTFT."""
    import csv

    from calibration.measurements import DATA_DIR

    rows = {}
    for name in ("llama_cpp/server_single_stream.csv", "vllm_cpu/single_stream.csv"):
        rows.update({r["tag"]: r for r in csv.DictReader((DATA_DIR / "this_machine" / name).read_text().splitlines())})
    row = rows[tag]
    kw = {"arrival": {"kind": "closed_loop", "users": 1, "think_time_s": 0}, "prompt": 128, "output": 64, "num_requests": 24,
              "model": "smollm2-135m", "hardware": "epyc-zen5-2c-vm"}
    quiet = {**SINGLE_STREAM[tag], "speed_noise": {"profile": "none"}}  # the exact sum below needs a steady machine
    with_front = _run(quiet, **kw).metrics
    alone = _run({**quiet, "frontend": {"profile": "none"}}, **kw).metrics
    ttft, tpot, e2e = float(row["ttft_p50_s"]) * 1e3, float(row["tpot_p50_ms"]), float(row["e2e_p50_s"]) * 1e3
    assert with_front["median_ttft_ms"] == pytest.approx(ttft, rel=0.10)
    assert with_front["median_tpot_ms"] == pytest.approx(tpot, rel=0.10)
    assert with_front["median_e2el_ms"] == pytest.approx(e2e, rel=0.10)
    front = select_frontend(SINGLE_STREAM[tag]["engine"], SINGLE_STREAM[tag].get("version", "b6000"), "cpu",
                            hardware_id="epyc-zen5-2c-vm")
    assert with_front["median_ttft_ms"] - alone["median_ttft_ms"] == pytest.approx(
        front.request_s * 1e3 + front.token_s * 1e3 + front.step_s * 1e3, rel=1e-6)


_SANDBOX = {  # tag -> (summary file under sandbox_zen4/, server spec, expected front-end profile)
    "np1_t1": ("llama_cpp/server_single_user.csv", {"engine": "llama.cpp", "version": "b7600", "quantization": "f16",
                                                    "threads": 1, "parallel": 1, "ctx_size": 2048}, "llama.cpp"),
    "np4_t1": ("llama_cpp/server_single_user.csv", {"engine": "llama.cpp", "version": "b7600", "quantization": "f16",
                                                    "threads": 1, "parallel": 4, "ctx_size": 4096}, "llama.cpp"),
    "vllm_t1": ("vllm_cpu/server_single_user.csv", {"engine": "vllm", "version": "0.32.0", "dtype": "bfloat16",
                                                    "threads": 1, "max_num_seqs": 16, "max_num_batched_tokens": 2048,
                                                    "max_model_len": 1024}, "vllm"),
}


@pytest.mark.parametrize("tag", list(_SANDBOX))
def test_sandbox_single_user_server_runs_are_reproduced(tag: str) -> None:
    """The sandbox's one-user server runs (calibration: its own cost profiles and front ends were
    fitted on its benches and these rows): TTFT, TPOT and e2e within 10 %, with the machine's
    own front-end profile."""
    import csv

    from calibration.measurements import DATA_DIR

    name, spec, engine = _SANDBOX[tag]
    rows = csv.DictReader((DATA_DIR / "sandbox_zen4" / name).read_text().splitlines())
    row = {r["tag"]: r for r in rows}[tag]
    res = _run(spec, arrival={"kind": "closed_loop", "users": 1, "think_time_s": 0}, prompt=128, output=64,
               num_requests=24, model="smollm2-135m", hardware="epyc-zen4-2c-vm")
    assert res.notes["frontend"].startswith(f"frontend-{engine}-epyc-zen4-2c-vm")
    assert res.metrics["median_ttft_ms"] == pytest.approx(float(row["ttft_p50_s"]) * 1e3, rel=0.10)
    assert res.metrics["median_tpot_ms"] == pytest.approx(float(row["tpot_p50_ms"]), rel=0.10)
    assert res.metrics["median_e2el_ms"] == pytest.approx(float(row["e2e_p50_s"]) * 1e3, rel=0.10)
