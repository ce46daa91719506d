"""Fitting cost profiles: recovery of known parameters, provenance, cache, selection."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import calibration.fit as fit
import calibration.fit.profiles
from calibration.fit import Point, fit_all, fit_profile, roofline_cost
from calibration.measurements import VALIDATION_PATHS
from sim.catalog import get_format, get_hardware, get_model
from sim.profiles import CostParams, CostProfile, load_profiles, select_profile
from sim.shapes import BatchShape

ROOT = Path(__file__).resolve().parent.parent
PROFILES = ROOT / "calibration" / "profiles"
TRUE = CostParams(
    bandwidth_efficiency=0.7, compute_efficiency=0.4, attention_efficiency=0.2,
    step_overhead_s=0.001, seq_overhead_s=0.0002,
)
PRIOR = CostParams(
    bandwidth_efficiency=0.5, compute_efficiency=0.5, attention_efficiency=0.5,
    step_overhead_s=0.0005, seq_overhead_s=0.0001,
)


def _pairs(chunk: int, past: int) -> float:
    return chunk * (past + (chunk + 1) / 2)


def _synthetic(shapes: list[BatchShape], params: CostParams, noise: float, seed: int = 1) -> list[Point]:
    """Points priced by the simulator's own RooflineStepCost with ``params``, times (1 + noise)."""
    model, hw, fmt = get_model("llama-3.2-1b"), get_hardware("rtx-4090"), get_format("f16")
    cost = roofline_cost(model, hw, fmt, params, kv_bytes_per_token=model.kv_bytes_per_token(2.0), max_pass_tokens=512)
    rng = np.random.default_rng(seed)
    return [
        Point((s,), cost.step_time(s) * (1 + noise * rng.standard_normal()), 4.0, "synthetic", f"row {i}",
              "synthetic", "", "test", "", "rtx-4090")
        for i, s in enumerate(shapes)
    ]


def _rich_shapes() -> list[BatchShape]:
    """Passes that exercise every term: prompts on long pasts, small prompts, wide decodes."""
    shapes = [BatchShape(512, 1, past, _pairs(512, past)) for past in (0, 2048, 8192, 16384, 30000)]
    shapes += [BatchShape(n, 1, 0, _pairs(n, 0)) for n in (64, 128, 256)]
    shapes += [BatchShape(num_decode_seqs=d, num_context_tokens=d * c) for d in (1, 8, 32, 64) for c in (128, 2048)]
    shapes += [BatchShape(num_decode_seqs=1, num_context_tokens=c) for c in (16, 4096, 16384)]
    shapes += [BatchShape(256, 4, 0, 4 * _pairs(64, 0), num_decode_seqs=16, num_context_tokens=16 * 1024)]
    return shapes


def test_fit_recovers_known_parameters_from_synthetic_steps():
    # (vLLM: llama.cpp groups price multi-sequence decode by batch size, calibration/fit_batching.py)
    points = _synthetic(_rich_shapes(), TRUE, noise=0.01)
    profile, report = fit_profile(points, engine="vllm", hardware="rtx-4090", model="llama-3.2-1b",
                                  weight_format="f16", prior=PRIOR)
    for name in fit.PARAMS:
        assert report.status[name].startswith("fitted"), (name, report.status[name])
        got, want = getattr(profile.params, name), getattr(TRUE, name)
        assert got == pytest.approx(want, rel=0.12), (name, got, want)
    assert report.mape < 0.03
    assert profile.id == "fitted-vllm-rtx-4090-llama-3.2-1b-f16"


def test_llama_cpp_fit_recovers_the_batch_table_and_the_other_parameters():
    """Synthetic llama.cpp data with a known table: stage 1 recovers the efficiencies and the step
    overhead from the other rows, stage 2 the multiplier of every measured batch size."""
    truth = TRUE.model_copy(update={"seq_overhead_s": PRIOR.seq_overhead_s, "decode_batch_scale": {8: 2.0, 32: 3.0, 64: 2.5}})
    points = _synthetic(_rich_shapes(), truth, noise=0.0)
    profile, report = fit_profile(points, engine="llama.cpp", hardware="rtx-4090", model="llama-3.2-1b",
                                  weight_format="f16", prior=PRIOR)
    assert profile.params.decode_batch_scale == pytest.approx({8: 2.0, 32: 3.0, 64: 2.5}, rel=0.02)
    assert report.status["seq_overhead_s"].startswith("fixed at prior (per-sequence decode costs")
    for name in ("bandwidth_efficiency", "compute_efficiency", "step_overhead_s"):
        assert getattr(profile.params, name) == pytest.approx(getattr(truth, name), rel=0.12), name
    assert report.max_abs_error < 0.01


def test_exact_synthetic_data_is_fitted_exactly():
    points = _synthetic(_rich_shapes(), TRUE, noise=0.0)
    _, report = fit_profile(points, engine="vllm", hardware="rtx-4090", model="llama-3.2-1b",
                            weight_format="f16", prior=PRIOR)
    assert report.max_abs_error < 0.005


def test_unidentifiable_parameters_stay_at_the_prior():
    """Single-sequence decodes at short context say nothing about attention or GEMM efficiency."""
    shapes = [BatchShape(num_decode_seqs=1, num_context_tokens=c) for c in (8, 16, 32, 64)]
    points = _synthetic(shapes, TRUE, noise=0.0)
    profile, report = fit_profile(points, engine="llama.cpp", hardware="rtx-4090", model="llama-3.2-1b",
                                  weight_format="f16", prior=PRIOR)
    for name in ("attention_efficiency", "compute_efficiency"):
        assert report.status[name].startswith("fixed at prior"), report.status[name]
        assert getattr(profile.params, name) == getattr(PRIOR, name)
    assert report.max_abs_error < 0.01  # bandwidth (and overheads) still explain the points


def _fitted_files() -> list[Path]:
    return sorted(PROFILES.glob("fitted-*.yaml"))


def _fitted_profiles() -> list[CostProfile]:
    out = []
    for f in _fitted_files():
        data = yaml.safe_load(f.read_text())
        out += [CostProfile.model_validate(e) for e in data.get("profiles", [data])]
    return out


def test_shipped_fits_exist_and_record_their_inputs():
    profiles = [p for p in _fitted_profiles() if "copy_of" not in p.provenance and p.id.startswith("fitted-")
                and not p.id.startswith("fitted-prior-")]
    assert len(profiles) >= 10
    for p in profiles:
        prov = p.provenance
        assert prov["inputs"], p.id
        assert prov["num_points"] == len(prov["residuals"]) >= 1
        assert {"fit_date", "input_hash", "mape", "max_abs_error", "status", "measurements"} <= prov.keys()
        for row in prov["residuals"]:
            assert row["rel_error"] == pytest.approx(row["fitted_s"] / row["measured_s"] - 1, abs=2e-3)


def test_recorded_sha256_match_the_input_files():
    checked = 0
    for p in _fitted_profiles():
        for entry in p.provenance.get("inputs", []):
            path = ROOT / entry["path"]
            assert path.is_file(), f"{p.id}: input {entry['path']} is missing"
            assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], (
                f"{p.id}: {entry['path']} changed since the fit; rerun `servesim calibrate`")
            checked += 1
    assert checked > 0


def test_no_validation_data_among_fit_inputs():
    validation = [f"calibration/data/{v}" for v in VALIDATION_PATHS]
    for p in _fitted_profiles():
        for entry in p.provenance.get("inputs", []):
            assert not any(entry["path"] == v or entry["path"].startswith(v) for v in validation), (p.id, entry)
        for m in p.provenance.get("measurements", []):
            assert "validation" not in m["source"], (p.id, m)


def test_fitted_profiles_load_and_win_selection_for_their_group():
    loaded = {p.id for p in load_profiles()}
    groups = [p for p in _fitted_profiles() if p.model != "*"]
    assert groups
    for p in groups:
        assert p.id in loaded
        kind = get_hardware(p.hardware).kind
        chosen = select_profile(p.engine, p.hardware, kind, p.model, p.weight_format)
        # select_profile ignores threads: any fit of the same group (t1 or t2) may win.
        assert (chosen.engine, chosen.hardware, chosen.model, chosen.weight_format) == (
            p.engine, p.hardware, p.model, p.weight_format), (p.id, chosen.id)


def test_class_priors_apply_to_hardware_nobody_measured():
    # rtx-3060 has no llama.cpp fit: the consumer-GPU prior fitted from 3090/4080/4090 applies,
    # the one of the same weight format where there is one.
    chosen = select_profile("llama.cpp", "rtx-3060", "consumer_gpu", "qwen2.5-7b", "q4_k_m")
    assert chosen.id == "fitted-prior-llama.cpp-consumer_gpu-q4_k_m"
    assert "rtx-3090" in " ".join(chosen.provenance["groups"])
    assert all(g.endswith("q4_k_m") for g in chosen.provenance["groups"])
    other = select_profile("llama.cpp", "rtx-3060", "consumer_gpu", "qwen2.5-7b", "q5_k_m")
    assert other.id == "fitted-prior-llama.cpp-consumer_gpu"
    # Ollama runs llama.cpp's kernels: it gets the same numbers.
    ollama = select_profile("ollama", "rtx-3060", "consumer_gpu", "qwen2.5-7b", "q4_k_m")
    assert ollama.params == chosen.params


def _small_input() -> str:
    return "calibration/data/this_machine/llama_cpp/llama_bench_t1.csv"


def test_cache_hit_skips_the_refit(tmp_path, monkeypatch):
    first = fit_all([_small_input()], out=tmp_path)
    assert [r.cached for r in first.reports] == [False]
    assert {p.name for p in first.written} >= {f"{first.reports[0].profile_id}.yaml"}

    def boom(*args, **kwargs):
        raise AssertionError("refitted although the inputs did not change")

    monkeypatch.setattr(fit.profiles, "_fit", boom)
    second = fit_all([_small_input()], out=tmp_path)
    assert [r.cached for r in second.reports] == [True]
    assert second.written == []
    assert second.reports[0].params == first.reports[0].params
    with pytest.raises(AssertionError, match="refitted"):
        fit_all([_small_input()], out=tmp_path, force=True)


def test_changed_inputs_are_refitted(tmp_path):
    first = fit_all([_small_input()], out=tmp_path)
    # Pretend the stored fit came from other inputs: the hash no longer matches.
    path = tmp_path / f"{first.reports[0].profile_id}.yaml"
    path.write_text(path.read_text().replace(first.reports[0].input_hash, "0" * 64))
    second = fit_all([_small_input()], out=tmp_path)
    assert [r.cached for r in second.reports] == [False]


def test_calibrate_cli_writes_one_profile_file(tmp_path):
    out = tmp_path / "fitted.yaml"
    proc = subprocess.run([sys.executable, "-m", "sim", "calibrate", _small_input(), "--out", str(out),
                           "--report", str(tmp_path / "report")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    profiles = load_profiles((str(out),))
    assert any(p.id == "fitted-llama.cpp-epyc-zen5-2c-vm-smollm2-135m-f16-t1" for p in profiles)
    assert (tmp_path / "report" / "fit.png").stat().st_size > 0
    assert "measured" in proc.stdout


def test_calibrate_refuses_validation_data(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sim", "calibrate", "calibration/data/published/validation_visible.json",
         "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert "validation" in proc.stderr and "Traceback" not in proc.stderr
