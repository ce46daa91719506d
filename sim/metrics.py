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

    def __init__(self, g0: np.ndarray, slope: np.ndarray, count: np.ndarray, weight: np.ndarray) -> None:
        rising = slope > 0
        self.parts = [(g0[m], slope[m], count[m], weight[m], up) for m, up in ((rising, True), (~rising, False))]
        self.buffer = np.empty(max(int(np.sum(rising)), int(np.sum(~rising))))

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
            total += float(np.dot(weight, t))
        return total


def itl_stats(g0: np.ndarray, slope: np.ndarray, count: np.ndarray, weight: np.ndarray) -> dict[str, float]:
    """Token-weighted inter-token-latency statistics from segments of gaps ``g0 + slope*j``.

    Quantiles are exact weighted quantiles of the pooled gaps: flat segments are sorted once;
    the few sloped ones (fast-forwarded decode runs) are counted in closed form inside a
    bisection on the value.
    """
    if g0.size == 0:
        return {f"{s}_itl_ms": math.nan for s in STATS}
    count, weight = count.astype(float), weight.astype(float)
    n = float(np.sum(weight * count))
    s1 = np.sum(weight * (count * g0 + slope * count * (count - 1) / 2))
    mean = s1 / n
    c0 = g0 - mean  # centred, so the variance does not cancel catastrophically
    var = np.sum(weight * (count * c0**2 + c0 * slope * count * (count - 1)
                           + slope**2 * (count - 1) * count * (2 * count - 1) / 6)) / n
    del c0
    flat = (slope == 0) | (count == 1)
    order = np.argsort(g0[flat], kind="stable")
    flat_values = g0[flat][order]
    flat_cum = np.cumsum((weight * count)[flat][order])
    del order
    sloped = ~flat
    sg0, ssl, sct = g0[sloped], slope[sloped], count[sloped]
    sloped_below = _SlopedCounter(sg0, ssl, sct, weight[sloped])

    def below(x: float) -> float:
        k = int(np.searchsorted(flat_values, x, side="right"))
        total = float(flat_cum[k - 1]) if k else 0.0
        return total + (sloped_below(x) if sg0.size else 0.0)

    def quantile(q: float) -> float:
        target = q * n
        if sg0.size == 0:  # flat only: the answer is one of the values
            return float(flat_values[min(int(np.searchsorted(flat_cum, target, side="left")), flat_values.size - 1)])
        last = sg0 + ssl * (sct - 1)
        a = min(float(flat_values[0]) if flat_values.size else math.inf, float(np.min(np.minimum(sg0, last))))
        b = max(float(flat_values[-1]) if flat_values.size else -math.inf, float(np.max(np.maximum(sg0, last))))
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
    t, g0, slope, count, weight = rec.itl_columns()
    keep = (t >= t0) & (t <= t1)
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
        **itl_stats(g0[keep].astype(float), slope[keep].astype(float), count[keep].astype(np.int64),
                    weight[keep].astype(np.int64)),
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
