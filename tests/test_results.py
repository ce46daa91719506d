"""The results table, its warnings and the plots: what a reader sees of a run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from sim.metrics.peaks import peak_buckets
from sim.results.plots import PLOTS, plot_metric, run_title, save_standard_plots
from sim.results.table import MIN_COMPLETED, point_warnings, table_rows
from sim.scenario import load_scenario
from tests.vllm_reference import vllm_peaks

ROOT = Path(__file__).resolve().parents[1]
SWEEP = "workload.arrival.users"


def _row(server: str, users: int, arrived: int, completed: int, timeouts: int = 0, goodput: float | None = None) -> dict:
    return {"server": server, "engine": "vllm", "sweep": {SWEEP: users}, "arrived": arrived, "completed": completed,
            "failed": arrived - completed, "rejected": 0, "timeouts": timeouts, "cancelled": arrived - completed - timeouts,
            "in_flight": 0, "output_throughput": 100.0 * completed, "request_throughput": 1.0,
            "request_goodput": goodput, "median_ttft_ms": 10.0, "p99_ttft_ms": 90.0, "median_tpot_ms": 5.0,
            "median_e2el_ms": 500.0, "p99_e2el_ms": 2500.0}


def test_warnings_name_overloaded_and_too_small_points() -> None:
    rows = [_row("a", 1, 100, 100), _row("a", 8, 100, 49, timeouts=51), _row("b", 1, 100, 50, timeouts=50),
            _row("b", 8, 40, MIN_COMPLETED - 1, timeouts=0)]
    lines = point_warnings(rows, SWEEP)
    assert len(lines) == 2
    assert lines[0].startswith("a at users=8: 51 of 100 requests failed (51 timed out")
    assert lines[1].startswith(f"b at users=8: only {MIN_COMPLETED - 1} request(s) completed")
    # exactly half failed is not "more than half"; a point of 30 completions is enough
    assert point_warnings([_row("c", 1, 60, 30, timeouts=30)], SWEEP) == []


def test_table_has_failure_columns_and_goodput_only_with_an_slo() -> None:
    headers, cells = table_rows([_row("a", 1, 100, 90, timeouts=4)], SWEEP)
    assert headers[:7] == ["users", "server", "done", "rejected", "timeout", "aborted", "out tok/s"]
    assert "good/s" not in headers
    assert cells[0][2:6] == ["90", "0", "4", "6"]
    headers, cells = table_rows([_row("a", 1, 100, 90, goodput=0.75)], SWEEP)
    assert "good/s" in headers and cells[0][headers.index("good/s")] == "0.75"


def test_plots_have_units_a_full_title_and_are_written(tmp_path: Path) -> None:
    scenario = load_scenario(ROOT / "scenarios" / "seed_benchmark.yaml")
    title = run_title(scenario)
    assert "llama-3.1-8b" in title and "rtx-4090" in title
    for spec in scenario.servers:
        assert f"{spec.engine} {spec.version}" in title
    rows = [_row("a", u, 100, c, timeouts=100 - c) for u, c in ((1, 100), (5, 100), (20, 30))]
    for metric in PLOTS:
        ax = plot_metric(rows, metric, SWEEP)
        assert ax.get_xlabel() == "concurrent users (closed loop)"
        assert ax.get_ylabel().endswith(("(tokens/s)", "(s)", "(% of sent)"))
    share = plot_metric(rows, "timeouts", SWEEP).lines[0].get_ydata()
    assert list(share) == [0.0, 0.0, 70.0]
    latency = plot_metric(rows, "p99_e2el_ms", SWEEP)
    assert latency.get_yscale() == "log" and list(latency.lines[0].get_ydata()) == [2.5, 2.5, 2.5]
    paths = save_standard_plots(rows, SWEEP, tmp_path, title, timeout_s=30.0)
    assert sorted(Path(p).name for p in paths) == sorted(f"{m}.png" for m in PLOTS)
    assert all(Path(p).stat().st_size > 10_000 for p in paths)


def test_peaks_of_evenly_spaced_tokens() -> None:
    # one request, 11 tokens from t=0.5 to t=1.5 every 0.1 s: 5 fall in second 0, 6 in second 1
    tokens, concurrent = peak_buckets(np.array([0.0]), np.array([0.5]), np.array([1.5]), np.array([11]))
    assert (tokens, concurrent) == (6.0, 1)
    # two overlapping requests are concurrent in the seconds both touch; a one-token request
    # puts its token at its first-token time
    tokens, concurrent = peak_buckets(np.array([0.0, 0.2]), np.array([0.1, 2.6]), np.array([1.1, 2.6]),
                                      np.array([3, 1]))
    assert (tokens, concurrent) == (2.0, 2)
    assert peak_buckets(np.array([]), np.array([]), np.array([]), np.array([], dtype=int)) == (0.0, 0)


@given(st.lists(st.tuples(st.floats(0, 30), st.floats(0, 3), st.floats(0, 20), st.integers(1, 400)),
                min_size=1, max_size=25))
def test_peaks_equal_vllms_loop(requests) -> None:
    start, ttft, decode, tokens = (np.array(col) for col in zip(*requests, strict=True))
    first, end = start + ttft, start + ttft + decode
    gaps = np.where(tokens > 1, (end - first) / np.maximum(tokens - 1, 1), 0.0)
    itls = [[float(g)] * (int(k) - 1) for g, k in zip(gaps, tokens, strict=True)]
    expected = vllm_peaks(start.tolist(), (first - start).tolist(), itls, (end - start).tolist())
    assert peak_buckets(start, first, end, tokens) == expected
