"""Peak output tokens per second and peak concurrent requests, in 1-second buckets as vLLM does.

``vllm bench serve`` (``calculate_metrics`` in ``vllm/benchmarks/serve.py``, 0.11/0.12) takes
the successful requests only, starts its buckets at the earliest of their start times ``t0``,
puts every token at ``start + ttft``, then adds the request's inter-token gaps one by one, each
token into bucket ``int(time - t0)``, and counts a request as concurrent in every bucket from
``int(start - t0)`` to ``int(start + latency - t0)`` inclusive. The same floating-point steps are
taken here, so the figures are vLLM's to the last bit for the same lists.

servesim does not keep each request's own gaps (its ITLs are pooled segments), so a request's
gaps are taken as equal, its TPOT ``(latency - ttft) / (tokens - 1)``: exactly the ``itls`` lists
that :mod:`sim.results.bench` writes, so vLLM's loop over a servesim bench file gives these
numbers (tested).
"""

from __future__ import annotations

import numpy as np

__all__ = ["peak_buckets"]


def peak_buckets(start: np.ndarray, first: np.ndarray, end: np.ndarray, tokens: np.ndarray) -> tuple[float, int]:
    """(max_output_tokens_per_s, max_concurrent_requests) of the successful requests given.

    ``start``, ``first``, ``end``: absolute times (sent, first token, last token) of each
    successful request; ``tokens``: its output tokens. (0.0, 0) when there are none. The
    arithmetic is vLLM's (``stop = start + latency``, tokens at ``start + ttft`` plus equal
    gaps); temporaries are dropped as soon as they are used (peak memory, bench/speed.py).
    """
    if start.size == 0:
        return 0.0, 0
    t0 = float(np.min(start))
    stop = end - start  # latency
    stop += start  # start + latency
    size = int(np.ceil(float(np.max(stop)) - t0)) + 1
    stop -= t0
    edges = np.bincount((start - t0).astype(np.int64), minlength=size + 1)[: size + 1]
    edges -= np.bincount(stop.astype(np.int64) + 1, minlength=size + 1)[: size + 1]
    del stop
    max_concurrent = int(np.max(np.cumsum(edges)[:size]))
    del edges
    k = tokens.astype(np.int64)
    gap = end - first
    gap /= np.maximum(k - 1, 1)
    gap[k <= 1] = 0.0
    t = first - start  # ttft
    t += start  # start + ttft: each request's first token
    # tokens per bucket, added one by one: longest requests first, so the live ones are a prefix
    order = np.argsort(-k, kind="stable")
    t, gap, k = t[order], gap[order], k[order]
    del order
    out = np.zeros(size, dtype=np.int64)
    rel = np.empty_like(t)
    # requests still producing at step j: a prefix whose length falls as j passes each length
    live_at = np.searchsorted(-k, -np.arange(1, int(k[0]) + 1), side="right")
    for live in live_at.tolist():
        np.subtract(t[:live], t0, out=rel[:live])
        counts = np.bincount(rel[:live].astype(np.int64))  # times are >= t0: no negative bucket
        n = min(counts.size, size)  # a bucket past the last is dropped, as vLLM's guard does
        out[:n] += counts[:n]
        t[:live] += gap[:live]
    return float(np.max(out.astype(float))), max_concurrent
