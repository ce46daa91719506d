"""Reference code transcribed from vLLM, to test servesim's metrics against the real tool's.

From ``vllm/benchmarks/serve.py`` of vLLM 0.12.0 (the PyPI wheel; Apache-2.0, copyright the vLLM
contributors): the 1-second bucket loop of ``calculate_metrics``, kept statement for statement.
"""

from __future__ import annotations

import numpy as np

__all__ = ["vllm_peaks"]


def vllm_peaks(start: list[float], ttfts: list[float], itls: list[list[float]], latency: list[float]) -> tuple[float, int]:
    """vLLM's own loop (vllm/benchmarks/serve.py, calculate_metrics, v0.12.0, Apache-2.0),
    transcribed over the successful requests' start, ttft, itl and latency."""
    min_start_time = min(start)
    max_end_time = max(s + lat for s, lat in zip(start, latency, strict=True))
    duration_seconds = int(np.ceil(max_end_time - min_start_time)) + 1
    tokens_per_second = np.zeros(duration_seconds)
    concurrent_requests_per_second = np.zeros(duration_seconds)
    for s, ttft, itl, lat in zip(start, ttfts, itls, latency, strict=True):
        token_times = [s + ttft]
        current_time = token_times[0]
        for itl_value in itl:
            current_time += itl_value
            token_times.append(current_time)
        for token_time in token_times:
            second_bucket = int(token_time - min_start_time)
            if 0 <= second_bucket < duration_seconds:
                tokens_per_second[second_bucket] += 1
        for second in range(int(s - min_start_time), int((s + lat) - min_start_time) + 1):
            concurrent_requests_per_second[second] += 1
    return float(np.max(tokens_per_second)), int(np.max(concurrent_requests_per_second))
