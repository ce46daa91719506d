"""Metric definitions: ITL statistics from segments equal brute-force pooled gaps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sim.metrics import itl_stats


def _expand(g0, slope, count, weight):
    values = np.concatenate([g + s * np.arange(c) for g, s, c in zip(g0, slope, count, strict=True)])
    weights = np.concatenate([np.full(c, w) for c, w in zip(count, weight, strict=True)])
    return values, weights


def _weighted_quantile(values, weights, q):
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return values[order][np.searchsorted(cum, q * cum[-1], side="left")]


segments = st.lists(
    st.tuples(st.floats(0.001, 0.1), st.sampled_from([0.0, 0.0, 1e-5, -1e-6, 3e-4]), st.integers(1, 40), st.integers(1, 9)),
    min_size=1, max_size=30,
)


@given(segments)
def test_itl_stats_equal_pooled_gaps(segs) -> None:
    g0, slope, count, weight = (np.array(col, dtype=float) for col in zip(*segs, strict=True))
    stats = itl_stats(g0, slope, count.astype(np.int64), weight.astype(np.int64))
    values, weights = _expand(g0, slope, count.astype(int), weight)
    assert stats["mean_itl_ms"] == pytest.approx(np.average(values, weights=weights) * 1e3, rel=1e-9)
    var = np.average((values - np.average(values, weights=weights)) ** 2, weights=weights)
    assert stats["std_itl_ms"] == pytest.approx(np.sqrt(var) * 1e3, rel=1e-6, abs=1e-9)
    for q, key in ((0.5, "median_itl_ms"), (0.9, "p90_itl_ms"), (0.99, "p99_itl_ms")):
        assert stats[key] == pytest.approx(_weighted_quantile(values, weights, q) * 1e3, rel=1e-9, abs=1e-12)
