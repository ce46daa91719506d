"""The requests of a run as columns (:class:`Workload`), drawn in bulk before the run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INF = float("inf")


@dataclass
class Workload:
    """Request columns, indexed by request id (issue order)."""

    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    arrival_s: np.ndarray | None
    """Open loop: arrival times. Closed loop: None (arrivals follow completions)."""
    think_s: np.ndarray | None = None
    users: int = 0
    ramp_up_s: float = 0.0
    timeout_s: float = INF
    block_hashes: tuple[np.ndarray, ...] | None = None
    hash_block_tokens: int = 0
    turns: int = 1
    """Closed loop: turns per conversation (prompts carry the history)."""
    start_s: np.ndarray | None = None
    """Closed loop: when each user sends its first request (None: evenly over ``ramp_up_s``)."""

    def __len__(self) -> int:
        return int(self.prompt_tokens.size)
