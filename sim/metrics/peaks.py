"""Peak output tokens per second and peak concurrent requests, in 1-second buckets as vLLM does.

``vllm bench serve`` (``calculate_metrics`` in ``vllm/benchmarks/serve.py``, 0.11+) takes the
successful requests only, starts its buckets at the earliest of their start times ``t0``, puts
every token at ``start + ttft + cumsum(itl)`` into bucket ``int(time - t0)``, and counts a
request as concurrent in every bucket from ``int(start - t0)`` to ``int(end - t0)`` inclusive.
servesim does not keep each request's own gaps (its ITLs are pooled segments), so a request's
tokens are placed evenly between its first token and its end, ``first + j * tpot``: exactly the
token times of the ``itls`` lists that :mod:`sim.results.bench` writes, so a reader who recomputes
the peaks from the bench file with vLLM's loop gets these numbers.
"""

from __future__ import annotations

import numpy as np

__all__ = ["peak_buckets"]

CHUNK = 1 << 15
"""Requests per slice: the (request, bucket) pairs of one slice stay a few MB at any run size."""


def _token_buckets(first: np.ndarray, end: np.ndarray, tokens: np.ndarray, size: int) -> np.ndarray:
    """Tokens per bucket of requests whose ``tokens`` land evenly on [first, end] (relative times)."""
    out = np.zeros(size)
    for i in range(0, first.size, CHUNK):
        f, e, k = first[i:i + CHUNK], end[i:i + CHUNK], tokens[i:i + CHUNK]
        one = (k <= 1) | (e <= f)  # every token at the first-token time
        out += np.bincount(f[one].astype(np.int64), weights=k[one].astype(float), minlength=size)[:size]
        f, e, k = f[~one], e[~one], k[~one]
        if not f.size:
            continue
        gap = (e - f) / (k - 1)
        lo = f.astype(np.int64)
        last = f + (k - 1) * gap
        span = last.astype(np.int64) - lo + 1  # buckets each request touches
        owner = np.repeat(np.arange(f.size), span)
        bucket = lo[owner] + (np.arange(owner.size) - np.repeat(np.cumsum(span) - span, span))

        def before(edge: np.ndarray) -> np.ndarray:  # tokens j with f + j*gap < edge
            return np.clip(np.ceil((edge - f[owner]) / gap[owner]), 0, k[owner])

        counts = before(bucket + 1.0) - before(bucket.astype(float))
        keep = bucket < size
        out += np.bincount(bucket[keep], weights=counts[keep], minlength=size)[:size]
    return out


def peak_buckets(start: np.ndarray, first: np.ndarray, end: np.ndarray, tokens: np.ndarray) -> tuple[float, int]:
    """(max_output_tokens_per_s, max_concurrent_requests) of the successful requests given.

    ``start``, ``first``, ``end`` are absolute times (send, first token, last token) and
    ``tokens`` the output tokens of each successful request. (0.0, 0) when there are none.
    """
    if start.size == 0:
        return 0.0, 0
    t0 = float(np.min(start))
    size = int(np.ceil(float(np.max(end)) - t0)) + 1
    a = (start - t0).astype(np.int64)
    b = (end - t0).astype(np.int64)
    active = np.bincount(a, minlength=size + 1)[: size + 1] - np.bincount(b + 1, minlength=size + 1)[: size + 1]
    concurrent = np.cumsum(active)[:size]
    per_second = _token_buckets(first - t0, end - t0, tokens.astype(np.int64), size)
    return float(np.max(per_second)), int(np.max(concurrent))
