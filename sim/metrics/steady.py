"""The steady-state window: figures over the middle of a run, reported beside vLLM's whole-run ones.

The window ``[t0, t1]`` runs from the arrival of the first request after the warm-up (the first
``warmup`` requests in arrival order) to the arrival of the last request, so the start-up
transient and the drain are left out. Everything in it is measured on one set of requests: those
that *leave* the server inside the window (completed, timed out, rejected or aborted), the
departures. This makes the three figures obey Little's law on the same sample path:

* ``steady.mean_in_system`` L: the time-average number of requests inside the server (sent, not
  yet ended) over the window;
* ``steady.departure_rate`` X: departures per second of window;
* ``steady.mean_sojourn_s`` W: mean time in the server (end - arrival) of those departures.

``L * T`` is the area under the in-system count; ``X * W * T`` is the summed sojourns of the
departures. They differ only by the edge terms, the time before ``t0`` of requests already
inside at ``t0`` and the time inside the window of requests still inside at ``t1``:
``|L - X W| <= (N(t0) * age0 + N(t1) * age1) / T`` (``steady.little_bound``), where ``age0`` is
the longest time before ``t0`` of a request inside at ``t0`` and ``age1`` the longest time in
the window of one inside at ``t1``: small in a
steady state and large in overload, where no steady state exists (the queue grows).
``steady.little_error`` reports ``X W / L - 1``.

Throughputs count the completed departures (``steady.request_throughput``, ``steady.output_throughput``,
``steady.total_token_throughput``). The latency statistics (``steady.{mean,median,p90,p95,p99}_
{ttft,tpot,e2el}_ms``) are instead those of the completed requests that *arrived* in the window,
the run without its warm-up: the usual way to leave out a start-up burst (closed-loop users all
sending at once), which would still be ending, and so departing, early in the window. Their mean
E2EL is not Little's ``W``: ``steady.mean_sojourn_s`` is.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["STEADY_KEYS", "area_in_system", "steady_metrics", "steady_window"]

LATENCY_STATS = ("mean", "median", "p90", "p95", "p99")
STEADY_KEYS = tuple(f"steady.{k}" for k in (
    "window_start_s", "window_end_s", "duration", "completed", "request_throughput", "output_throughput",
    "total_token_throughput", "mean_in_system", "departure_rate", "mean_sojourn_s", "little_error",
    "little_bound", *(f"{s}_{m}_ms" for m in ("ttft", "tpot", "e2el") for s in LATENCY_STATS)))
"""Every ``steady.*`` key, in the order reported."""


def steady_window(arrival: np.ndarray, warmup: int) -> tuple[float, float] | None:
    """(t0, t1) of the window, or None when the run is too short for one (fewer than 2 requests
    after the warm-up, or all of them arriving at once)."""
    n = arrival.size
    if n < 2:
        return None
    order = np.sort(arrival)
    first = min(warmup, n - 2)
    t0, t1 = float(order[first]), float(order[-1])
    return (t0, t1) if t1 > t0 else None


def area_in_system(arrival: np.ndarray, end: np.ndarray, t0: float, t1: float) -> float:
    """Integral over [t0, t1] of the number of requests inside (arrived, not yet ended)."""
    lo = np.maximum(arrival, t0)
    hi = np.minimum(end, t1)
    return math.fsum(np.maximum(hi - lo, 0.0).tolist())


def _nan_block() -> dict[str, Any]:
    return dict.fromkeys(STEADY_KEYS, math.nan)


def _latency_stats(name: str, values_ms: np.ndarray) -> dict[str, float]:
    if values_ms.size == 0:
        return {f"steady.{s}_{name}_ms": math.nan for s in LATENCY_STATS}
    return {
        f"steady.mean_{name}_ms": float(np.mean(values_ms)),
        f"steady.median_{name}_ms": float(np.median(values_ms)),
        **{f"steady.p{q}_{name}_ms": float(np.percentile(values_ms, q)) for q in (90, 95, 99)},
    }


def steady_metrics(arrival: np.ndarray, first_token: np.ndarray, end: np.ndarray, completed: np.ndarray,
                   prompt: np.ndarray, output: np.ndarray, warmup: int) -> dict[str, Any]:
    """The ``steady.*`` figures (NaN when the run has no window). ``end`` is every request's end
    (completion, timeout, rejection or abort); ``completed`` masks the successful ones."""
    window = steady_window(arrival, warmup)
    if window is None:
        return _nan_block()
    t0, t1 = window
    span = t1 - t0
    leaves = (end >= t0) & (end <= t1)
    done = leaves & completed
    inside_t0 = (arrival < t0) & (end >= t0)  # (one ending at t0 departs in the window)
    inside_t1 = (arrival <= t1) & (end > t1)
    area = area_in_system(arrival, end, t0, t1)
    sojourn = (end - arrival)[leaves]
    mean_in = area / span
    rate = float(np.sum(leaves)) / span
    w = float(np.mean(sojourn)) if sojourn.size else math.nan
    age0 = float(np.max(t0 - arrival[inside_t0])) if np.any(inside_t0) else 0.0
    age1 = float(np.max(t1 - np.maximum(arrival[inside_t1], t0))) if np.any(inside_t1) else 0.0
    bound = (int(np.sum(inside_t0)) * age0 + int(np.sum(inside_t1)) * age1) / span
    cohort = (arrival >= t0) & (arrival <= t1) & completed
    multi = cohort & (output > 1)
    tpot = ((end - first_token) / np.maximum(output - 1, 1))[multi] * 1e3
    tokens_out = int(np.sum(output[done]))
    tokens_in = int(np.sum(prompt[done]))

    return {
        "steady.window_start_s": t0,
        "steady.window_end_s": t1,
        "steady.duration": span,
        "steady.completed": int(np.sum(done)),
        "steady.request_throughput": int(np.sum(done)) / span,
        "steady.output_throughput": tokens_out / span,
        "steady.total_token_throughput": (tokens_in + tokens_out) / span,
        "steady.mean_in_system": mean_in,
        "steady.departure_rate": rate,
        "steady.mean_sojourn_s": w,
        "steady.little_error": (rate * w / mean_in - 1.0) if mean_in > 0 and sojourn.size else math.nan,
        "steady.little_bound": bound,
        **_latency_stats("ttft", (first_token - arrival)[cohort] * 1e3),
        **_latency_stats("tpot", tpot),
        **_latency_stats("e2el", (end - arrival)[cohort] * 1e3),
    }
