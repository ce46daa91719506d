"""A machine's speed noise (sim/noise.py): the factor process, its exact ties to the noiseless run,
the throughput it implies, and its fit (calibration/fit_noise.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibration.fit_noise import fit_noise, noise_points, series_point, window_corr
from calibration.measurements import VALIDATION_PATHS
from sim.noise import NOISE_NONE, SpeedNoise, load_noise_profiles, noise_seed, select_noise
from sim.scenario import ScenarioError
from sim.simulation import run_server
from tests.helpers import tiny_scenario

COLUMNS = ("arrival_s", "started_s", "first_token_s", "finish_s", "generated", "status")
LINEAR = {"kind": "linear", "overhead_s": 0.004, "prefill_s_per_token": 2e-5, "decode_s_per_seq": 4e-4}
BUSY = {"arrival": {"kind": "poisson", "rate_per_s": 30.0}, "prompt": {"kind": "uniform", "low": 8, "high": 300},
        "output": {"kind": "uniform", "low": 1, "high": 60}, "num_requests": 300, "seed": 3}


def _run(server: dict, *, fast: bool = True, **kw):
    return run_server(tiny_scenario(server, step_s=None, **kw), fast=fast)


def _factors(noise: SpeedNoise, seed: int, n: int) -> np.ndarray:
    process = noise.process(seed)
    return np.array([process.at(k * noise.step_s)[0] for k in range(n)])


def test_the_factor_has_reciprocal_mean_one_the_stated_cv_and_an_ar1_correlation() -> None:
    noise = SpeedNoise("t", cv=0.12, correlation_s=2.0, interval_s=0.5)
    s = _factors(noise, 7, 200_000)
    rho = math.exp(-0.5 / 2.0)
    # n / (1 + 2 rho / (1 - rho)) effectively independent samples
    n_eff = len(s) * (1 - rho) / (1 + rho)
    assert abs((1 / s).mean() - 1.0) < 4 * 0.12 / math.sqrt(n_eff)  # flat out: the benchmarks' pass rate
    assert abs(s.mean() - (1 + 0.12**2)) < 4 * 0.12 / math.sqrt(n_eff)
    assert s.std() / s.mean() == pytest.approx(0.12, rel=0.05)
    x = np.log(s) - np.log(s).mean()
    assert float(np.dot(x[:-1], x[1:]) / np.dot(x, x)) == pytest.approx(rho, abs=0.01)


def test_the_factor_at_a_time_does_not_depend_on_when_it_is_asked() -> None:
    noise = SpeedNoise("t", cv=0.1, correlation_s=1.0)
    times = np.sort(np.random.default_rng(1).uniform(0, 5_000, 2_000))
    dense = noise.process(noise_seed(4, 0))
    for t in np.arange(0, 5_000, 0.01):  # asked every 10 ms
        dense.at(float(t))
    sparse = noise.process(noise_seed(4, 0))  # asked only at the times below, jumping far ahead
    for t in times:
        assert sparse.at(float(t)) == dense.at(float(t))
    assert noise.process(noise_seed(4, 1)).at(0.0) != dense.at(0.0)  # another machine: another stream


@pytest.mark.parametrize("server", [
    {"kind": "serial_decode", "parallel": 2, "ctx_size": 4096, "cost": LINEAR},
    {"kind": "paged_batching", "max_num_seqs": 16, "max_num_batched_tokens": 256, "num_kv_blocks": 400, "cost": LINEAR},
])
def test_zero_noise_reproduces_the_noiseless_run_bit_for_bit(server: dict) -> None:
    bare = _run(server, **BUSY)
    zero = _run({**server, "speed_noise": {"cv": 0.0, "correlation_s": 0.3}}, **BUSY)
    for col in COLUMNS:
        np.testing.assert_array_equal(getattr(bare.recorder, col), getattr(zero.recorder, col), err_msg=col)
    assert "no speed noise" in zero.notes["speed_noise"]


@pytest.mark.parametrize("server", [
    {"kind": "serial_decode", "parallel": 2, "ctx_size": 4096, "cost": LINEAR},
    {"kind": "paged_batching", "max_num_seqs": 16, "max_num_batched_tokens": 256, "num_kv_blocks": 400, "cost": LINEAR},
])
def test_fast_forwarded_runs_see_the_same_factors_as_stepping_pass_by_pass(server: dict) -> None:
    noisy = {**server, "speed_noise": {"cv": 0.2, "correlation_s": 0.05}}  # changes every 12.5 ms, inside runs
    fast, slow = _run(noisy, **BUSY), _run(noisy, fast=False, **BUSY)
    for col in COLUMNS:
        np.testing.assert_allclose(getattr(fast.recorder, col), getattr(slow.recorder, col), rtol=1e-9, err_msg=col)
    bare = _run(server, **BUSY)
    assert not np.allclose(fast.recorder.finish_s, bare.recorder.finish_s)  # the noise did something


def test_a_frozen_factor_scales_every_time_by_itself() -> None:
    """With a correlation time far beyond the run the factor stays its first value S0: a serial
    server's every time is the noiseless one times S0 (arrivals scaled alike: a closed loop)."""
    server = {"kind": "serial_decode", "parallel": 1, "ctx_size": 4096, "cost": LINEAR}
    kw = {"arrival": {"kind": "closed_loop", "users": 3, "think_time_s": 0}, "prompt": 50, "output": 20,
          "num_requests": 40, "seed": 5}
    noise = {"cv": 0.3, "correlation_s": 1e12, "interval_s": 1e9}
    s0 = SpeedNoise("x", 0.3, 1e12, 1e9).process(noise_seed(5, 0)).at(0.0)[0]
    assert abs(s0 - 1) > 0.01  # a factor that shows
    bare, frozen = _run(server, **kw), _run({**server, "speed_noise": noise}, **kw)
    np.testing.assert_allclose(frozen.recorder.finish_s, bare.recorder.finish_s * s0, rtol=1e-9)
    assert frozen.metrics["output_throughput"] == pytest.approx(bare.metrics["output_throughput"] / s0, rel=1e-9)


def test_a_saturated_server_keeps_the_noiseless_throughput() -> None:
    """Passes per second average 1/S over time, and E[1/S] = 1: the throughput of a server running
    flat out is the noiseless one (the costs are fitted on flat-out benchmarks)."""
    cv = 0.3
    server = {"kind": "serial_decode", "parallel": 1, "ctx_size": 8192, "cost": {"kind": "constant", "step_s": 0.001}}
    kw = {"arrival": {"kind": "closed_loop", "users": 2, "think_time_s": 0}, "prompt": 1, "output": 4000,
          "num_requests": 500, "seed": 11}
    bare = _run(server, **kw)
    ratios = []
    for seed in range(11, 15):
        noisy = _run({**server, "speed_noise": {"cv": cv, "correlation_s": 0.2}}, **{**kw, "seed": seed})
        ratios.append(noisy.metrics["output_throughput"] / bare.metrics["output_throughput"])
    # 2,000 s of passes over 0.2 s correlation times: ~10,000 independent stretches per run;
    # E[S] = 1 instead would give 1 + cv^2 = 1.09
    assert np.mean(ratios) == pytest.approx(1.0, abs=0.01)


def test_same_seed_same_results_and_the_seed_matters() -> None:
    server = {"kind": "serial_decode", "parallel": 2, "ctx_size": 4096, "cost": LINEAR, "speed_noise": {"cv": 0.1}}
    a, b = _run(server, **BUSY), _run(server, **BUSY)
    np.testing.assert_array_equal(a.recorder.finish_s, b.recorder.finish_s)
    c = _run(server, **{**BUSY, "seed": 4})
    d = _run({**server, "speed_noise": {"cv": 0.0}}, **{**BUSY, "seed": 4})
    assert not np.array_equal(c.recorder.finish_s, d.recorder.finish_s)


def test_fleet_replicas_are_different_machines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each replica draws its own speed stream: two requests sent 0.5 s apart to the two replicas
    (round robin, light load, 2 s correlation) take unrelated times; were the streams one, the
    two replicas would be slow and fast together (the control below)."""
    import sim.fleet.build as build

    server = {"kind": "serial_decode", "parallel": 1, "ctx_size": 4096, "cost": {"kind": "constant", "step_s": 0.01},
              "replicas": 2, "router": {"kind": "round_robin"}, "speed_noise": {"cv": 0.2, "correlation_s": 2.0}}
    kw = {"arrival": {"kind": "constant", "rate_per_s": 2.0}, "prompt": 10, "output": 20, "num_requests": 600}

    def paired_correlation() -> float:
        r = _run(server, **kw).recorder
        e2e = r.finish_s - r.arrival_s
        return float(np.corrcoef(e2e[0::2], e2e[1::2])[0, 1])

    assert "speed factor cv 20.00 %" in _run(server, **kw).notes["speed_noise"]  # the fleet's run says it
    assert abs(paired_correlation()) < 0.4
    shared = build.noise_seed
    monkeypatch.setattr(build, "noise_seed", lambda seed, machine: shared(seed, 0))
    assert paired_correlation() > 0.6

def test_the_hardware_profile_applies_by_default_and_is_named() -> None:
    (machine, noise), *_ = load_noise_profiles()
    assert select_noise(machine) == noise
    assert select_noise("h100-sxm") is NOISE_NONE  # no class default
    server = {"kind": "serial_decode", "parallel": 1, "ctx_size": 2048, "cost": LINEAR}
    kw = {"arrival": {"kind": "closed_loop", "users": 1, "think_time_s": 0}, "prompt": 16, "output": 8,
          "num_requests": 4, "model": "llama-3.2-1b"}
    on_machine = _run(server, hardware=machine, **kw)
    assert on_machine.notes["speed_noise"].startswith(noise.id)
    assert "speed_noise" not in _run(server, **kw).notes
    off = _run({**server, "speed_noise": {"profile": "none"}}, hardware=machine, **kw)
    assert "speed_noise" not in off.notes


def test_bad_noise_input_is_a_clean_error() -> None:
    with pytest.raises(ScenarioError, match=r"speed_noise.profile: unknown speed-noise profile 'nope'; known: none"):
        _run({"kind": "serial_decode", "parallel": 1, "cost": LINEAR, "speed_noise": {"profile": "nope"}})
    with pytest.raises(ScenarioError, match=r"speed_noise.cv"):
        _run({"kind": "serial_decode", "parallel": 1, "cost": LINEAR, "speed_noise": {"cv": 2.0}})
    sampled = {"kind": "single_queue", "num_parallel": 1,
               "cost": {"kind": "sampled", "distribution": {"kind": "exponential", "mean_s": 0.1}}}
    with pytest.raises(ScenarioError, match=r"sampled service time has none; drop speed_noise"):
        _run({**sampled, "speed_noise": {"cv": 0.1}})


def test_window_correlation_limits() -> None:
    assert window_corr(1e6, 1.0, 1.2) == pytest.approx(1.0, abs=1e-4)  # frozen: every window alike
    assert window_corr(1e-3, 1.0, 1.2) == pytest.approx(0.0, abs=1e-6)  # white: neighbours unrelated
    taus = [0.1, 0.5, 1, 2, 5, 20]
    assert np.all(np.diff([window_corr(t, 1.0, 1.3) for t in taus]) > 0)


def test_the_fit_recovers_a_known_process_from_per_request_averages() -> None:
    cv, tau, fine = 0.05, 3.0, 0.01
    noise = SpeedNoise("truth", cv, tau, fine)
    window, lag, n = 1.0, 1.3, 4000
    s = _factors(noise, 2, int(n * lag / fine) + 200)
    per_request = np.array([s[int(i * lag / fine): int((i * lag + window) / fine)].mean() for i in range(n)])
    got_cv, got_tau, _, _ = series_point(per_request * 0.012, window, lag)  # 12 ms per token, say
    assert got_cv == pytest.approx(cv, rel=0.15)
    assert got_tau == pytest.approx(tau, rel=0.3)


def test_fitted_profiles_have_provenance_match_the_shipped_file_and_use_no_validation_data() -> None:
    shipped = {noise.id: (hw, noise) for hw, noise in load_noise_profiles()}
    fitted = fit_noise()
    assert {p["id"] for p in fitted} == set(shipped)
    for entry in fitted:
        hw, noise = shipped[entry["id"]]
        assert hw == entry["hardware"]
        assert noise.cv == pytest.approx(entry["cv"], abs=1e-9)
        assert noise.correlation_s == pytest.approx(entry["correlation_s"], abs=1e-9)
        prov = noise.provenance
        assert entry["cv"] == pytest.approx(float(np.median(prov["cv_points"])), abs=1e-4)
        assert all(p["source"] and p["sha256"] and p["date"] and p["formula"] for p in prov["points"])
    for p in noise_points():
        assert not any(v in p.source for v in VALIDATION_PATHS)
        assert "llama_cpp_python_server" not in p.source and "server_load" not in p.source


@pytest.mark.parametrize("path", ["scenarios/local/ollama_three_models_4090.yaml", "scenarios/local/swap_two_models_4090.yaml"])
def test_a_multi_model_box_runs_with_noise_reproducibly(path: str) -> None:
    """Several models on one machine (Ollama's runners, llama-swap's processes, which share one
    factor): the noise changes the run, the same seed repeats it, and the notes name it."""
    from sim.scenario import load_scenario, with_override

    scenario = load_scenario(path).model_copy(update={"sweep": None})
    i = next(k for k, s in enumerate(scenario.servers)
             if getattr(s, "models", None) or getattr(s, "llama_swap", None) is not None)
    noisy = with_override(scenario, f"servers.{i}.speed_noise", {"cv": 0.2, "correlation_s": 0.5})
    bare, a, b = run_server(scenario, i), run_server(noisy, i), run_server(noisy, i)
    np.testing.assert_array_equal(a.recorder.finish_s, b.recorder.finish_s)
    assert not np.array_equal(a.recorder.finish_s, bare.recorder.finish_s)
    assert "speed factor cv 20.00 %" in a.notes["speed_noise"]


def test_the_run_says_which_speed_noise_applied() -> None:
    """No silent default: the command line's per-server line names the machine's noise profile."""
    from sim.cli.app import profile_lines

    (machine, noise), *_ = load_noise_profiles()
    server = {"kind": "serial_decode", "parallel": 1, "ctx_size": 2048, "cost": LINEAR}
    kw = {"arrival": {"kind": "closed_loop", "users": 1, "think_time_s": 0}, "prompt": 16, "output": 8,
          "num_requests": 4, "model": "llama-3.2-1b"}
    for hardware, said in ((machine, True), ("h100-sxm", False)):
        result = _run(server, hardware=hardware, **kw)
        (line,) = profile_lines([{"server": result.server, "notes": result.notes}])
        assert (f"speed noise: {noise.id}" in line) is said
