"""Metrics of a run, computed once from per-request timestamps (definitions in the README).

Names follow ``vllm bench serve``: ``completed``, ``request_throughput``, ``output_throughput``,
``total_token_throughput`` and mean/median/std/p90/p99 of ``ttft_ms``, ``tpot_ms``, ``itl_ms``
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

STATS = ("mean", "median", "std", "p90", "p99")


def _stats(name: str, values_ms: np.ndarray) -> dict[str, float]:
    if values_ms.size == 0:
        return {f"{s}_{name}": math.nan for s in STATS}
    return {
        f"mean_{name}": float(np.mean(values_ms)),
        f"median_{name}": float(np.median(values_ms)),
        f"std_{name}": float(np.std(values_ms)),
        f"p90_{name}": float(np.percentile(values_ms, 90)),
        f"p99_{name}": float(np.percentile(values_ms, 99)),
    }


def _segment_counts(x: float, g0: np.ndarray, slope: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Per segment, how many of its gaps g0 + slope*j (j < count) are <= x."""
    out = np.where(g0 <= x, count, 0).astype(float)
    up, down = slope > 0, slope < 0
    with np.errstate(divide="ignore", invalid="ignore"):
        k_up = np.clip(np.floor((x - g0) / slope) + 1, 0, count)
        k_down = np.clip(count - np.clip(np.ceil((x - g0) / slope), 0, None), 0, count)
    return np.where(up, k_up, np.where(down, k_down, out))


def itl_stats(segments: np.ndarray) -> dict[str, float]:
    """Token-weighted inter-token-latency statistics from ``(gap0, slope, count, weight)`` rows."""
    if segments.size == 0:
        return {f"{s}_itl_ms": math.nan for s in STATS}
    g0, slope, count, weight = (segments[:, i] for i in range(4))
    n = float(np.sum(weight * count))
    s1 = np.sum(weight * (count * g0 + slope * count * (count - 1) / 2))
    s2 = np.sum(weight * (count * g0**2 + g0 * slope * count * (count - 1)
                          + slope**2 * (count - 1) * count * (2 * count - 1) / 6))
    mean = s1 / n
    last = g0 + slope * (count - 1)
    lo, hi = float(np.min(np.minimum(g0, last))), float(np.max(np.maximum(g0, last)))

    def quantile(q: float) -> float:
        target, a, b = q * n, lo, hi
        for _ in range(60):
            mid = (a + b) / 2
            if np.sum(weight * _segment_counts(mid, g0, slope, count)) >= target:
                b = mid
            else:
                a = mid
        return b

    return {
        "mean_itl_ms": mean * 1e3,
        "median_itl_ms": quantile(0.5) * 1e3,
        "std_itl_ms": math.sqrt(max(s2 / n - mean**2, 0.0)) * 1e3,
        "p90_itl_ms": quantile(0.9) * 1e3,
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
    segs = np.array([s[1:] for s in rec.itl_segments if t0 <= s[0] <= t1], dtype=float).reshape(-1, 4)
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
        **itl_stats(segs),
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
