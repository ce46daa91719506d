"""Thread-aware CPU pricing: `threads` selects or interpolates the fitted profile, and is refused
above the hardware's cores."""

from __future__ import annotations

import pytest

import sim.profiles as profiles_module
from sim.profiles import CostParams, CostProfile, select_for_threads
from sim.scenario import ScenarioError
from sim.simulation import run_server
from tests.helpers import tiny_scenario


def _profile(threads: int, bw: float, seq: float, table: dict[int, float]) -> CostProfile:
    return CostProfile(
        id=f"fitted-llama.cpp-cpu-generic-16c-smollm2-135m-f16-t{threads}", engine="llama.cpp",
        hardware="cpu-generic-16c", model="smollm2-135m", weight_format="f16", threads=threads,
        params=CostParams(bandwidth_efficiency=bw, compute_efficiency=0.4, attention_efficiency=0.3,
                          step_overhead_s=0.001, seq_overhead_s=seq, decode_batch_scale=table))


@pytest.fixture
def two_thread_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = profiles_module.load_profiles()
    extra = (_profile(1, 0.3, 0.004, {2: 2.0, 4: 3.0}), _profile(4, 0.9, 0.001, {2: 1.0}))
    monkeypatch.setattr(profiles_module, "load_profiles", lambda extra_files=(): shipped + extra)


def _select(threads: int | None) -> CostProfile:
    return select_for_threads("llama.cpp", "cpu-generic-16c", "cpu", "smollm2-135m", "f16", threads)


def test_a_measured_thread_count_picks_its_profile_unchanged(two_thread_counts: None) -> None:
    for t in (1, 4):
        chosen = _select(t)
        assert chosen.threads == t and "selection" not in chosen.provenance


def test_between_measured_counts_the_parameters_are_interpolated(two_thread_counts: None) -> None:
    chosen = _select(2)  # 1/3 of the way from t1 to t4
    assert chosen.params.bandwidth_efficiency == pytest.approx(0.3 + (0.9 - 0.3) / 3)
    assert chosen.params.seq_overhead_s == pytest.approx(0.004 - 0.003 / 3)
    assert chosen.params.decode_batch_scale == pytest.approx({2: 2.0 - 1.0 / 3})
    assert "interpolated between" in chosen.provenance["selection"]


def test_beyond_the_measured_counts_the_nearest_is_used_with_a_note(two_thread_counts: None) -> None:
    chosen = _select(8)
    assert chosen.threads == 4
    assert "no profile measured with 8 threads" in chosen.provenance["selection"]
    unset = _select(None)
    assert unset.threads == 4 and "threads not set" in unset.provenance["selection"]


def _cpu_run(threads: int | None, hardware: str = "epyc-zen5-2c-vm"):
    server = {"engine": "llama.cpp", "quantization": "f16", "parallel": 1, "frontend": {"profile": "none"}}
    if threads is not None:
        server["threads"] = threads
    return run_server(tiny_scenario(server, step_s=None, model="smollm2-135m", hardware=hardware,
                                    arrival={"kind": "closed_loop", "users": 1, "think_time_s": 0},
                                    prompt=128, output=32, num_requests=4))


def test_threads_above_the_cores_are_refused_cleanly() -> None:
    with pytest.raises(ScenarioError, match=r"threads=3 but epyc-zen5-2c-vm has 2 cores; use threads <= 2"):
        _cpu_run(3)


def test_the_run_says_which_profile_it_used_and_two_threads_decode_faster() -> None:
    one, two, unset = _cpu_run(1), _cpu_run(2), _cpu_run(None)
    assert one.notes["cost_profile"].endswith("-t1") and two.notes["cost_profile"].endswith("-t2")
    assert "cost_profile_selection" not in one.notes
    assert "threads not set" in unset.notes["cost_profile_selection"]
    assert two.metrics["mean_tpot_ms"] < one.metrics["mean_tpot_ms"]
