"""Metrics of a run, computed once from per-request timestamps (definitions: docs/metrics.md).

The top-level names and values are those of ``vllm bench serve`` (``calculate_metrics`` and
``benchmark`` in ``vllm/benchmarks/serve.py``, 0.11+), over the whole run: ``duration`` runs
from the first request sent to the last request ended; ``completed`` counts the successful
requests and ``failed`` the others; ``request_throughput = completed / duration``,
``output_throughput = total_output_tokens / duration`` and ``total_token_throughput =
(total_input_tokens + total_output_tokens) / duration`` exactly; TTFT, TPOT and E2EL statistics
are numpy's ``mean``, ``median``, ``std`` and ``percentile`` over the successful requests;
``max_output_tokens_per_s`` and ``max_concurrent_requests`` come from 1-second buckets
(:mod:`sim.metrics.peaks`). Tokens generated for requests that then timed out or were aborted
are ``wasted_output_tokens``, never in a throughput.

servesim adds the split of the failures (``rejected``, ``timeouts``, ``cancelled``, ``in_flight``),
``wasted_output_tokens``, ``num_preemptions``, ``prefix_cache_hit_rate``, ``busy_fraction``,
and the ``steady.*`` figures of a steady-state window (:mod:`sim.metrics.steady`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sim.metrics.itl import STATS, itl_stats
from sim.metrics.peaks import peak_buckets
from sim.metrics.steady import steady_metrics
from sim.recorder import Recorder
from sim.requests import Status

__all__ = ["STATS", "end_times", "itl_stats", "request_tpot_s", "summarize"]

PERCENTILES = (90, 95, 99)


def _stats(name: str, values_ms: np.ndarray) -> dict[str, float]:
    """numpy's statistics of ``values_ms`` (NaN when empty; vLLM writes 0 there, see bench)."""
    if values_ms.size == 0:
        return {f"{s}_{name}": math.nan for s in STATS}
    return {
        f"mean_{name}": float(np.mean(values_ms)),
        f"median_{name}": float(np.median(values_ms)),
        f"std_{name}": float(np.std(values_ms)),
        **{f"p{p}_{name}": float(np.percentile(values_ms, p)) for p in PERCENTILES},
    }


def end_times(rec: Recorder) -> np.ndarray:
    """When each request ended for its client: completion, timeout, rejection or abort
    (``finish_s``; a request still inside has none: NaN)."""
    n = rec.num_arrived
    return np.where(rec.status[:n] == Status.IN_FLIGHT, np.nan, rec.finish_s[:n])


def request_tpot_s(first: np.ndarray, end: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """vLLM's per-request TPOT: (latency - ttft) / (tokens - 1), 0 for a request of <= 1 token."""
    return np.where(tokens > 1, (end - first) / np.maximum(tokens - 1, 1), 0.0)


def summarize(rec: Recorder, warmup: int, slo: dict[str, float] | None = None) -> dict[str, Any]:
    """All metrics of one run as a flat dict (JSON-able); ``steady.*`` keys for the window."""
    # the ITL statistics first: their float64 copies of every segment are freed before the
    # per-request columns below are built (peak memory, bench/speed.py)
    itl = itl_stats(*(column.astype(float) for column in rec.itl_columns()[1:]))
    n = rec.num_arrived
    status = rec.status[:n]
    arrival, first_tok = rec.arrival_s[:n], rec.first_token_s[:n]
    end = end_times(rec)
    out_tokens, prompt = rec.generated[:n].astype(np.int64), rec.prompt_tokens[:n].astype(np.int64)
    ok = status == Status.COMPLETED
    counts = {name: int(np.sum(status == s)) for name, s in (
        ("rejected", Status.REJECTED), ("timeouts", Status.TIMEOUT),
        ("cancelled", Status.CANCELLED), ("in_flight", Status.IN_FLIGHT))}
    completed = int(np.sum(ok))
    ended = np.isfinite(end)
    duration = float(np.max(end[ended]) - np.min(arrival)) if n and np.any(ended) else math.nan
    total_in, total_out = int(np.sum(prompt[ok])), int(np.sum(out_tokens[ok]))

    def per_s(x: float) -> float:
        return x / duration if duration > 0 else math.nan

    e2el_s = (end - arrival)[ok]
    ttft_s = (first_tok - arrival)[ok]
    tpot_all = request_tpot_s(first_tok[ok], end[ok], out_tokens[ok])
    peak_tok, peak_conc = peak_buckets(arrival[ok], first_tok[ok], end[ok], out_tokens[ok])
    wasted = (status == Status.TIMEOUT) | (status == Status.CANCELLED)
    result: dict[str, Any] = {
        "arrived": int(n),
        "completed": completed,
        "failed": int(n) - completed - counts["in_flight"],
        **counts,
        "duration": duration,
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "request_throughput": per_s(completed),
        "output_throughput": per_s(total_out),
        "total_token_throughput": per_s(total_in + total_out),
        "max_output_tokens_per_s": peak_tok,
        "max_concurrent_requests": peak_conc,
        "wasted_output_tokens": int(np.sum(out_tokens[wasted])),
        **_stats("ttft_ms", ttft_s * 1e3),
        **_stats("tpot_ms", tpot_all[out_tokens[ok] > 1] * 1e3),
        **itl,
        **_stats("e2el_ms", e2el_s * 1e3),
        "num_preemptions": int(np.sum(rec.num_preemptions[:n])),
        "prefix_cache_hit_rate": float(np.sum(rec.cached_tokens[:n][ok]) / max(total_in, 1)),
        # the engine's busy time over the simulated time from 0 to the last end (as before)
        "busy_fraction": min(rec.busy_s / max(float(np.max(end[ended])) if np.any(ended) else 1.0, 1e-12), 1.0),
    }
    if slo:
        good = np.ones(completed, dtype=bool)
        for key, values in (("ttft_ms", ttft_s), ("tpot_ms", tpot_all), ("e2el_ms", e2el_s)):
            if slo.get(key) is not None:
                good &= slo[key] / 1e3 >= values
        result["good_completed"] = int(np.sum(good))
        result["request_goodput"] = per_s(int(np.sum(good)))
    result.update(steady_metrics(arrival, first_tok, end, ok, prompt, out_tokens, warmup))
    return result
