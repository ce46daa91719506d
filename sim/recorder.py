"""Collects per-request timestamps in numpy columns, and inter-token gaps as segments."""

from __future__ import annotations

from array import array

import numpy as np

from sim.requests import Request, Status

__all__ = ["Recorder"]


class Recorder:
    """Per-request results in columns (no object per finished request).

    Inter-token latencies are kept as segments ``(gap0, slope, count, weight)``: ``count`` passes
    whose gaps are ``gap0 + slope * j`` and which each gave one token to ``weight`` requests. A
    fast-forwarded run of decode passes is one or two segments, whatever its length.
    """

    arrival_s: np.ndarray
    started_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    generated: np.ndarray
    status: np.ndarray
    cached_tokens: np.ndarray
    num_preemptions: np.ndarray
    capacity: int

    def __init__(self, capacity: int) -> None:
        self._grow_to(capacity, fresh=True)
        self.num_arrived = 0
        # 24 bytes a segment: gaps in float32 (a relative error of 6e-8 is far below any
        # latency that matters), the time that windows them in float64
        self.itl_time, self.itl_gap0, self.itl_slope = array("d"), array("f"), array("f")
        self.itl_count, self.itl_weight = array("i"), array("i")
        self.now = 0.0
        self.num_passes = 0
        self.busy_s = 0.0

    def _grow_to(self, capacity: int, fresh: bool = False) -> None:
        def col(dtype: type, fill: float) -> np.ndarray:
            return np.full(capacity, fill, dtype=dtype)

        new = {
            "arrival_s": col(float, np.nan),
            "started_s": col(float, np.nan),
            "first_token_s": col(float, np.nan),
            "finish_s": col(float, np.nan),
            "prompt_tokens": col(np.int32, 0),
            "output_tokens": col(np.int32, 0),
            "generated": col(np.int32, 0),
            "status": col(np.int8, 0),
            "cached_tokens": col(np.int32, 0),
            "num_preemptions": col(np.int16, 0),
        }
        if not fresh:
            for name, column in new.items():
                old = getattr(self, name)
                column[: old.size] = old
        for name, column in new.items():
            setattr(self, name, column)
        self.capacity = capacity

    def arrive(self, request: Request) -> None:
        """A request reached the server."""
        i = request.id
        if i >= self.capacity:
            self._grow_to(max(2 * self.capacity, i + 1))
        self.arrival_s[i] = request.arrival_s
        self.prompt_tokens[i] = request.prompt_tokens
        self.output_tokens[i] = request.output_tokens
        self.num_arrived += 1

    def finish(self, request: Request, now: float, status: Status) -> None:
        """A request left the server: completed, timed out, rejected or cancelled."""
        i = request.id
        self.finish_s[i] = now
        self.status[i] = status
        self.generated[i] = request.generated
        self.started_s[i] = request.started_s if request.started_s >= 0 else np.nan
        delivered = 0 <= request.first_token_s <= now  # a timed-out client sees nothing after it left
        self.first_token_s[i] = request.first_token_s if delivered else np.nan
        self.cached_tokens[i] = request.cached_tokens
        self.num_preemptions[i] = request.num_preemptions

    def itl(self, gap0: float, slope: float, count: int, weight: int) -> None:
        """Record ``count`` passes of gaps ``gap0 + slope*j``, each giving ``weight`` tokens."""
        if weight > 0 and count > 0:
            self.itl_time.append(self.now)
            self.itl_gap0.append(gap0)
            self.itl_slope.append(slope)
            self.itl_count.append(count)
            self.itl_weight.append(weight)

    def itl_columns(self) -> tuple[np.ndarray, ...]:
        """(time, gap0, slope, count, weight) of every segment, as numpy views (no copies)."""
        kinds = {"d": np.float64, "f": np.float32, "i": np.int32}
        return tuple(np.frombuffer(col, dtype=kinds[col.typecode])
                     for col in (self.itl_time, self.itl_gap0, self.itl_slope, self.itl_count, self.itl_weight))

    def trim(self) -> None:
        """Drop unused capacity at the end of a run."""
        n = self.num_arrived
        for name in (
            "arrival_s", "started_s", "first_token_s", "finish_s", "prompt_tokens",
            "output_tokens", "generated", "status", "cached_tokens", "num_preemptions",
        ):
            setattr(self, name, getattr(self, name)[:n])
        self.capacity = n
