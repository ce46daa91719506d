"""``servesim run --timeline`` and the timeline plots: files written, labels quotable."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from sim.results.timeline import record_timeline
from sim.results.timeline_plots import (
    plot_batch_and_step_time,
    plot_gantt,
    plot_kv_occupancy,
    plot_step_time_vs_batch,
    roofline_lines,
)
from tests.test_perfetto import assert_valid_trace
from tests.test_timeline_run import seed_at

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "scenarios" / "seed_benchmark.yaml"


def _servesim(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sim", "run", str(SEED), *args], capture_output=True, text=True, check=False,
                          cwd=ROOT)


def test_run_timeline_writes_a_trace_per_sweep_value_with_its_plots(tmp_path: Path) -> None:
    proc = _servesim("--set", "sweep.values=[1,5]", "--set", "workload.num_requests=30",
                     "--timeline", str(tmp_path / "seed.json"))
    assert proc.returncode == 0, proc.stderr
    for users in (1, 5):
        doc = json.loads((tmp_path / f"seed_users{users}.json").read_text())
        assert_valid_trace(doc)
        assert doc["otherData"]["sweep"] == json.dumps({"workload.arrival.users": users})
        for plot in ("gantt", "batch_step_time", "kv_occupancy", "step_time_vs_batch"):
            assert (tmp_path / f"seed_users{users}_{plot}.png").stat().st_size > 10_000
    assert "| vllm" not in proc.stderr and "vllm" in proc.stdout  # the table is printed as usual


def test_run_timeline_over_the_limit_is_a_clean_error(tmp_path: Path) -> None:
    proc = _servesim("--set", "sweep.values=[5]", "--set", "workload.num_requests=100000",
                     "--timeline", str(tmp_path / "big.json"))
    assert proc.returncode == 2
    text = " ".join(proc.stderr.split())  # (the console wraps long lines)
    assert "timelines are for small runs (at most 5,000 requests a server)" in text
    assert "--set workload.num_requests=" in text
    assert "Traceback" not in proc.stderr and not (tmp_path / "big.json").exists()


def test_run_timeline_to_a_path_that_cannot_be_a_file_is_a_clean_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for bad, says in ((tmp_path, "is a folder"), (blocker / "trace.json", "is a file, not a folder")):
        proc = _servesim("--set", "sweep.values=[5]", "--set", "workload.num_requests=20", "--timeline", str(bad))
        text = " ".join(proc.stderr.split())
        assert proc.returncode == 2 and says in text and "Traceback" not in proc.stderr, proc.stderr


def _texts(fig: Figure) -> str:
    parts = [fig.get_suptitle()] if fig._suptitle is not None else []
    for ax in fig.axes:
        parts += [ax.get_title(), ax.get_title("left"), ax.get_xlabel(), ax.get_ylabel()]
        legend = ax.get_legend()
        if legend is not None:
            parts += [t.get_text() for t in legend.get_texts()]
    return " | ".join(parts)


def test_plots_name_units_model_hardware_and_engine_versions() -> None:
    timeline = record_timeline(seed_at(5, 30))
    figures = {
        "gantt": (plot_gantt(timeline), ["(s)"]),
        "batch": (plot_batch_and_step_time(timeline), ["(s)", "(ms per pass, log scale)", "(sequences per pass)"]),
        "kv": (plot_kv_occupancy(timeline), ["(s)", "(% of capacity)", "KV blocks", "KV tokens"]),
        "roofline": (plot_step_time_vs_batch(timeline), ["(ms per pass)", "memory-bound", "compute-bound"]),
    }
    for name, (fig, units) in figures.items():
        text = _texts(fig)
        for needle in ["llama-3.1-8b", "rtx-4090", "5 closed-loop users", "vllm 0.11.0 (V1)", "ollama 0.5.7",
                       "llama.cpp b6000", *units]:
            assert needle in text, f"{name} plot lacks {needle!r}"


@pytest.mark.parametrize("server", ["vllm", "llama.cpp", "llama.cpp small-batch kernels"])
def test_the_roofline_lines_cross_where_the_cost_model_changes_bound(server: str) -> None:
    timeline = record_timeline(seed_at(1, 10), servers=[server.split()[0]])
    cost = timeline.servers[0].cost
    if "small-batch" in server:  # a fitted decode_scale table (1.6x at one sequence, ...)
        cost = dataclasses.replace(cost, decode_scale=(1.6, 1.3, 1.15, 1.05))
    batch = np.arange(1, 513)
    memory, compute = roofline_lines(cost, batch, context_per_seq=0.0)
    # with no context the cost model's decode pass is overheads + max(GEMM memory, GEMM compute) + KV write:
    # the higher line is within the KV-write term of it
    model = np.array([cost.decode_line(int(b)).at(0) for b in batch])
    assert np.all(np.maximum(memory, compute) <= model * (1 + 1e-9))
    assert np.all(model - np.maximum(memory, compute) <= cost.kv_bytes_per_token * batch / cost.bandwidth_bytes_per_s + 1e-12)
    assert memory[0] > compute[0] and memory[-1] < compute[-1]  # memory-bound at 1, compute-bound at 512
