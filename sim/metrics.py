"""Metrics of a run, computed once from per-request timestamps (definitions in the README).

Names follow ``vllm bench serve``: ``completed``, ``request_throughput``, ``output_throughput``,
``total_token_throughput`` and mean/median/std/p90/p95/p99 of ``ttft_ms``, ``tpot_ms``, ``itl_ms``
and ``e2el_ms``; plus ``timeouts``, ``rejected``, ``cancelled`` and ``in_flight``.

Steady state: the first ``warmup`` requests (by arrival order) are left out, and the
measurement window runs from the arrival of the first counted request to the arrival of the
last request, so the start-up transient and the drain after the last arrival are excluded.
Throughputs count what completed inside the window; latencies are over the counted requests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from sim.recorder import Recorder
from sim.requests import Status

__all__ = ["summarize"]

STATS = ("mean", "median", "std", "p90", "p95", "p99")


def _stats(name: str, values_ms: np.ndarray) -> dict[str, float]:
    if values_ms.size == 0:
        return {f"{s}_{name}": math.nan for s in STATS}
    return {
        f"mean_{name}": float(np.mean(values_ms)),
        f"median_{name}": float(np.median(values_ms)),
        f"std_{name}": float(np.std(values_ms)),
        f"p90_{name}": float(np.percentile(values_ms, 90)),
        f"p95_{name}": float(np.percentile(values_ms, 95)),
        f"p99_{name}": float(np.percentile(values_ms, 99)),
    }


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


def window(rec: Recorder, warmup: int) -> tuple[int, float, float]:
    """(first counted request, window start, window end)."""
    n = rec.num_arrived
    order = np.argsort(rec.arrival_s[:n], kind="stable")
    first = min(warmup, max(n - 1, 0))
    t0 = float(rec.arrival_s[order[first]]) if n else 0.0
    t1 = float(rec.arrival_s[order[-1]]) if n else 0.0
    if t1 - t0 <= 0:  # too few requests for a steady-state window: use the whole run
        first, t0 = 0, float(np.nanmin(rec.arrival_s[:n])) if n else 0.0
        t1 = float(np.nanmax(rec.finish_s[:n])) if n and np.any(np.isfinite(rec.finish_s[:n])) else t0
    return first, t0, t1


def summarize(rec: Recorder, warmup: int, slo: dict[str, float] | None = None) -> dict[str, Any]:
    """All metrics of one run as a flat dict (JSON-able)."""
    n = rec.num_arrived
    status = rec.status[:n]
    first, t0, t1 = window(rec, warmup)
    t, g0, slope, count, weight = rec.itl_columns()
    keep = (t >= t0) & (t <= t1)
    # first, so that its temporaries and the per-request arrays below are not alive together
    itl = itl_stats(*(column[keep].astype(float) for column in (g0, slope, count, weight)))
    del keep
    counted = rec.arrival_s[:n] >= t0
    done = counted & (status == Status.COMPLETED)
    span = max(t1 - t0, 1e-12)
    in_window = (status == Status.COMPLETED) & (rec.finish_s[:n] >= t0) & (rec.finish_s[:n] <= t1)
    out_tokens = rec.generated[:n]
    arrival, first_tok, finish = rec.arrival_s[:n], rec.first_token_s[:n], rec.finish_s[:n]
    e2el = (finish - arrival)[done] * 1e3
    ttft = (first_tok - arrival)[done] * 1e3
    multi = done & (out_tokens > 1)
    tpot = ((finish - first_tok) / np.maximum(out_tokens - 1, 1))[multi] * 1e3
    result: dict[str, Any] = {
        "arrived": int(n),
        "counted": int(np.sum(counted)),
        "completed": int(np.sum(done)),
        "timeouts": int(np.sum(counted & (status == Status.TIMEOUT))),
        "rejected": int(np.sum(counted & (status == Status.REJECTED))),
        "cancelled": int(np.sum(counted & (status == Status.CANCELLED))),
        "in_flight": int(np.sum(counted & (status == Status.IN_FLIGHT))),
        "duration": span,
        "total_input_tokens": int(np.sum(rec.prompt_tokens[:n][done])),
        "total_output_tokens": int(np.sum(out_tokens[done])),
        "request_throughput": float(np.sum(in_window)) / span,
        "output_throughput": float(np.sum(out_tokens[in_window])) / span,
        "total_token_throughput": float(np.sum(out_tokens[in_window]) + np.sum(rec.prompt_tokens[:n][in_window])) / span,
        **_stats("ttft_ms", ttft),
        **_stats("tpot_ms", tpot),
        **itl,
        **_stats("e2el_ms", e2el),
        "num_preemptions": int(np.sum(rec.num_preemptions[:n])),
        "prefix_cache_hit_rate": float(np.sum(rec.cached_tokens[:n][done]) / max(np.sum(rec.prompt_tokens[:n][done]), 1)),
        "busy_fraction": min(rec.busy_s / max(float(np.nanmax(finish)) if n and np.any(np.isfinite(finish)) else 1.0, 1e-12), 1.0),
    }
    if slo:
        good = done.copy()
        for key, arr in (("ttft_ms", (first_tok - arrival) * 1e3), ("e2el_ms", (finish - arrival) * 1e3),
                         ("tpot_ms", (finish - first_tok) / np.maximum(out_tokens - 1, 1) * 1e3)):
            if slo.get(key) is not None:
                good &= arr <= slo[key]
        result["request_goodput"] = float(np.sum(good & in_window)) / span
    return result
