"""Requests in flight and the columns their results are written to."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = ["Phase", "Request", "Status"]


class Status(IntEnum):
    """How a request ended (the ``status`` column of a result)."""

    IN_FLIGHT = 0
    COMPLETED = 1
    TIMEOUT = 2
    """The client gave up after ``timeout_s``; the engine cancelled the request."""
    REJECTED = 3
    """HTTP 503: the server refused the request (Ollama's full scheduler queue)."""
    CANCELLED = 4
    """The engine aborted the request itself (prompt over the context limit, KV pool exhausted)."""


class Phase(IntEnum):
    """Where a request is inside a server."""

    QUEUED = 0
    PREFILL = 1
    DECODE = 2
    GONE = 3


@dataclass(slots=True, eq=False)
class Request:
    """One inference request in flight (mutable; discarded when it leaves the server).

    Decoding progress is implicit while the request sits in a :class:`~sim.servers.base.DecodeSet`:
    its context during the pass that takes the set's pass counter from ``n`` to ``n + 1`` is
    ``key + n``; ``generated`` is only brought up to date when it leaves the set.
    """

    id: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    deadline_s: float = float("inf")
    user: int = -1
    block_hashes: tuple[int, ...] = ()
    """Prefix-block hashes of the prompt (equal hashes = shareable KV), ``hash_block_tokens`` each."""
    hash_block_tokens: int = 0
    held_keys: list[object] | None = None
    """Prefix-cache keys of the KV blocks whose reference this request holds (paged servers)."""
    phase: Phase = Phase.QUEUED
    computed: int = 0
    """Tokens of the current prefill target already in the KV cache."""
    generated: int = 0
    key: int = 0
    event_at: int = 0
    heap_entry: int = 0
    """Identifies the request's live entry in the decode-set heap (0 = none)."""
    """Decode-set pass count at which this request next needs attention (finish or overflow)."""
    blocks: int = 0
    """KV blocks held (paged servers), or KV tokens held (slot servers), outside the decode set."""
    slot: int = -1
    started_s: float = -1.0
    first_token_s: float = -1.0
    last_token_s: float = -1.0
    cached_tokens: int = 0
    num_preemptions: int = 0
    discarded: int = 0
    """Tokens dropped from the context by context shifts (Ollama, older llama.cpp)."""

    @property
    def prefill_target(self) -> int:
        """Tokens that must be in the KV cache before the next token can be sampled."""
        return self.prompt_tokens + self.generated
