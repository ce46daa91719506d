"""Identities of the metrics on every point of every shipped scenario (docs/metrics.md).

Each figure is recomputed here from the recorder's columns by a route of its own, and must
equal the reported one: request conservation, vLLM's throughput identities (to float
precision), the whole-run duration, the split of output tokens into delivered and wasted, and
Little's law on the steady window (exactly in its sample-path form, and within its edge bound).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from sim.requests import Status
from sim.scenario import load_scenario
from sim.simulation import PointResult, run

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "scenarios").rglob("*.yaml"))


@pytest.fixture(scope="module")
def points() -> list[tuple[str, PointResult]]:
    out = []
    for path in SCENARIOS:
        for result in run(load_scenario(path)):
            out.append((f"{path.relative_to(ROOT)} {result.server} {result.sweep}", result))
    return out


def test_every_shipped_scenario_is_covered(points) -> None:
    assert {name.split(" ")[0] for name, _ in points} == {str(p.relative_to(ROOT)) for p in SCENARIOS}
    assert len(points) >= 30


def test_requests_are_conserved(points) -> None:
    for name, r in points:
        m, status = r.metrics, r.recorder.status
        counts = {s: int(np.sum(status == s)) for s in Status}
        assert m["arrived"] == status.size, name
        assert m["completed"] == counts[Status.COMPLETED], name
        assert m["rejected"] == counts[Status.REJECTED] and m["timeouts"] == counts[Status.TIMEOUT], name
        assert m["cancelled"] == counts[Status.CANCELLED] and m["in_flight"] == counts[Status.IN_FLIGHT], name
        # completed = arrived - rejected - timed_out - failed (aborted) - in_flight
        assert m["completed"] == m["arrived"] - m["rejected"] - m["timeouts"] - m["cancelled"] - m["in_flight"], name
        # vLLM's "failed": every request that ended without success
        assert m["failed"] == m["rejected"] + m["timeouts"] + m["cancelled"], name


def test_throughputs_are_totals_over_the_duration(points) -> None:
    for name, r in points:
        m, rec = r.metrics, r.recorder
        ok = rec.status == Status.COMPLETED
        # duration: first request sent to the last request ended (whatever its end)
        assert m["duration"] == float(np.max(rec.finish_s) - np.min(rec.arrival_s)), name
        assert m["total_input_tokens"] == int(np.sum(rec.prompt_tokens[ok].astype(np.int64))), name
        assert m["total_output_tokens"] == int(np.sum(rec.generated[ok].astype(np.int64))), name
        d = m["duration"]
        assert m["request_throughput"] == m["completed"] / d, name
        assert m["output_throughput"] == m["total_output_tokens"] / d, name
        assert m["total_token_throughput"] == (m["total_input_tokens"] + m["total_output_tokens"]) / d, name
        # every generated token is delivered (a completed request) or wasted, never both
        assert m["total_output_tokens"] + m["wasted_output_tokens"] == int(np.sum(rec.generated.astype(np.int64))), name
        if m.get("request_goodput") is not None:
            assert m["request_goodput"] == m["good_completed"] / d and m["good_completed"] <= m["completed"], name


def test_latency_statistics_are_numpys_over_successful_requests(points) -> None:
    for name, r in points:
        m, rec = r.metrics, r.recorder
        ok = rec.status == Status.COMPLETED
        if not np.any(ok):
            assert math.isnan(m["p99_e2el_ms"]), name
            continue
        e2el = (rec.finish_s - rec.arrival_s)[ok] * 1e3
        ttft = (rec.first_token_s - rec.arrival_s)[ok] * 1e3
        assert m["p99_e2el_ms"] == pytest.approx(float(np.percentile(e2el, 99)), rel=1e-12), name
        assert m["median_ttft_ms"] == pytest.approx(float(np.median(ttft)), rel=1e-12), name
        assert m["mean_ttft_ms"] == pytest.approx(float(np.mean(ttft)), rel=1e-12), name
        assert 1 <= m["max_concurrent_requests"] <= m["completed"], name
        assert 0 < m["max_output_tokens_per_s"] <= m["total_output_tokens"], name


def _area_by_events(arrival: np.ndarray, end: np.ndarray, t0: float, t1: float) -> float:
    """Integral of N(t) over [t0, t1] by sweeping the sorted arrival and end events."""
    times = np.concatenate([arrival, end])
    steps = np.concatenate([np.ones(arrival.size), -np.ones(end.size)])
    order = np.argsort(times, kind="stable")
    times, level = times[order], np.cumsum(steps[order])
    edges = np.clip(np.append(times, t1), t0, t1)
    return float(np.sum(level * np.diff(edges)))


LITTLE_STEADY_TOLERANCE = 0.01
"""|X W / L - 1| on points that are in a steady state: no failure, edge terms (the
``steady.little_bound``) under 5 % of L, and at least :data:`STEADY_MIN_DEPARTURES` departures in
the window (with a handful of departures one request more or less at an edge is several %)."""
STEADY_MIN_DEPARTURES = 200


def test_steady_figures_obey_littles_law(points) -> None:
    steady_points = 0
    for name, r in points:
        m, rec = r.metrics, r.recorder
        if math.isnan(m["steady.duration"]):
            continue
        t0, t1, span = m["steady.window_start_s"], m["steady.window_end_s"], m["steady.duration"]
        L, X, W = m["steady.mean_in_system"], m["steady.departure_rate"], m["steady.mean_sojourn_s"]
        # the sample-path identity: L*T is the area under the number of requests inside
        assert L * span == pytest.approx(_area_by_events(rec.arrival_s, rec.finish_s, t0, t1), rel=1e-9), name
        leaves = (rec.finish_s >= t0) & (rec.finish_s <= t1)
        assert X == np.sum(leaves) / span, name
        # Little's law: L and X W differ by the edge terms only, bounded by little_bound
        assert abs(L - X * W) <= m["steady.little_bound"] * (1 + 1e-9) + 1e-9, name
        if m["failed"] == 0 and m["steady.little_bound"] < 0.05 * L and np.sum(leaves) >= STEADY_MIN_DEPARTURES:
            steady_points += 1
            assert abs(m["steady.little_error"]) <= LITTLE_STEADY_TOLERANCE, name
        done = leaves & (rec.status == Status.COMPLETED)
        assert m["steady.completed"] == int(np.sum(done)), name
        assert m["steady.request_throughput"] == m["steady.completed"] / span, name
    assert steady_points >= 10  # the tolerance is exercised, not vacuous
