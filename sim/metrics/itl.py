"""Inter-token-latency statistics from the recorder's segments (exact, without expanding them).

The recorder keeps ITLs as segments ``(gap0, slope, count, weight)``: ``count`` passes whose
gaps are ``gap0 + slope * j``, each giving one token to ``weight`` requests. The statistics are
those of the pooled, token-weighted gaps, as if every gap were listed once per token.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["STATS", "itl_stats"]

STATS = ("mean", "median", "std", "p90", "p95", "p99")


class _SlopedCounter:
    """Counts, weighted, the gaps g0 + slope*j (j < count) of sloped segments that are <= x.

    Rising and falling segments are kept apart (each needs one formula, not both), and the
    arithmetic runs in a reused buffer: the quantile bisection calls this some 240 times.
    """

    def __init__(self, g0: np.ndarray, slope: np.ndarray, count: np.ndarray, weight: np.ndarray,
                 sloped: np.ndarray) -> None:
        rising = sloped & (slope > 0)
        falling = sloped & (slope < 0)
        self.parts = [(g0[m], slope[m], count[m], weight[m], up)
                      for m, up in ((rising, True), (falling, False))]
        self.size = sum(part[0].size for part in self.parts)
        self.buffer = np.empty(max(part[0].size for part in self.parts))
        self.low, self.high = math.inf, -math.inf  # the range of the gaps
        for g0, slope, count, _, _ in self.parts:
            if g0.size:
                last = slope * (count - 1)
                last += g0
                self.low = min(self.low, float(np.min(g0)), float(np.min(last)))
                self.high = max(self.high, float(np.max(g0)), float(np.max(last)))

    def __call__(self, x: float) -> float:
        total = 0.0
        for g0, slope, count, weight, up in self.parts:
            if not g0.size:
                continue
            t = np.subtract(x, g0, out=self.buffer[: g0.size])
            np.divide(t, slope, out=t)
            if up:  # j <= (x - g0) / slope
                np.floor(t, out=t)
                t += 1
            else:  # j >= (x - g0) / slope
                np.ceil(t, out=t)
                np.maximum(t, 0, out=t)
                np.subtract(count, t, out=t)
            np.clip(t, 0, count, out=t)
            t *= weight  # (integers: the sum is exact in any order)
            total += float(t.sum())
        return total


CHUNK = 1 << 16
"""Segments per slice when summing over all of them: temporaries stay small at any run size."""


def _moments(
    g0: np.ndarray, slope: np.ndarray, count: np.ndarray, weight: np.ndarray
) -> tuple[float, float, float]:
    """(tokens, mean gap, gap variance) of the segments, summed slice by slice."""
    def total(term: Callable[..., np.ndarray]) -> float:
        parts = (term(*(column[i:i + CHUNK] for column in (g0, slope, count, weight)))
                 for i in range(0, g0.size, CHUNK))
        return math.fsum(float(np.sum(part)) for part in parts)

    n = total(lambda g, s, c, w: w * c)
    mean = total(lambda g, s, c, w: w * (c * g + s * c * (c - 1) / 2)) / n
    # centred on the mean, so the variance does not cancel catastrophically
    var = total(lambda g, s, c, w: w * (c * (g - mean) ** 2 + (g - mean) * s * c * (c - 1)
                                        + s**2 * (c - 1) * c * (2 * c - 1) / 6)) / n
    return n, mean, var


def itl_stats(g0: np.ndarray, slope: np.ndarray, count: np.ndarray, weight: np.ndarray) -> dict[str, float]:
    """Token-weighted inter-token-latency statistics from segments of gaps ``g0 + slope*j``.

    Quantiles are exact weighted quantiles of the pooled gaps: flat segments are sorted once;
    the few sloped ones (fast-forwarded decode runs) are counted in closed form inside a
    bisection on the value. The columns are only read: pass float64 arrays to avoid copies.
    """
    if g0.size == 0:
        return {f"{s}_itl_ms": math.nan for s in STATS}
    count, weight = np.asarray(count, dtype=float), np.asarray(weight, dtype=float)
    n, mean, var = _moments(g0, slope, count, weight)
    flat = (slope == 0) | (count == 1)
    flat_values = g0[flat]
    order = np.argsort(flat_values, kind="stable")
    flat_values = flat_values[order]
    flat_cum = (weight[flat] * count[flat])[order]
    del order
    np.cumsum(flat_cum, out=flat_cum)
    np.logical_not(flat, out=flat)
    sloped_below = _SlopedCounter(g0, slope, count, weight, flat)
    del flat
    low = min(float(flat_values[0]) if flat_values.size else math.inf, sloped_below.low)
    high = max(float(flat_values[-1]) if flat_values.size else -math.inf, sloped_below.high)

    def below(x: float) -> float:
        k = int(np.searchsorted(flat_values, x, side="right"))
        total = float(flat_cum[k - 1]) if k else 0.0
        return total + sloped_below(x)

    def quantile(q: float) -> float:
        target = q * n
        if not sloped_below.size:  # flat only: the answer is one of the values
            return float(flat_values[min(int(np.searchsorted(flat_cum, target, side="left")), flat_values.size - 1)])
        a, b = low, high
        for _ in range(60):
            mid = (a + b) / 2
            if below(mid) >= target:
                b = mid
            else:
                a = mid
        return b

    return {
        "mean_itl_ms": mean * 1e3,
        "median_itl_ms": quantile(0.5) * 1e3,
        "std_itl_ms": math.sqrt(max(var, 0.0)) * 1e3,
        "p90_itl_ms": quantile(0.9) * 1e3,
        "p95_itl_ms": quantile(0.95) * 1e3,
        "p99_itl_ms": quantile(0.99) * 1e3,
    }
