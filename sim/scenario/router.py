"""The router of a fleet (FLEETS.md §1-§5): which rule it decides by, what it sees, how fast it is."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sim.scenario.base import Spec

RouterKind = Literal[
    "round_robin", "random", "least_outstanding", "power_of_two", "least_loaded",
    "session", "prefix_trie", "llm_d", "kv_cost",
]

DEFAULT_INTERVAL_S = {"llm_d": 0.05, "least_loaded": 0.05}
"""Scrape intervals by router (llm-d's EPP polls every 50 ms, FLEETS.md §2)."""


class RouterSpec(Spec):
    """A router in front of the replicas: a station with its own service time, and a rule."""

    kind: RouterKind = "round_robin"
    """Decision rule: round_robin | random | least_outstanding (router-local in-flight count,
    nginx least_conn) | power_of_two (two random replicas, the less busy) | least_loaded
    (join the shortest queue on scraped snapshots) | session (vLLM production-stack consistent
    hash) | prefix_trie (production-stack prefixaware) | llm_d (EPP weighted scorers) |
    kv_cost (Dynamo KV router)."""
    service_s: float = Field(ge=0, default=0.0)
    """Fixed seconds the router spends on each request."""
    service_s_per_byte: float = Field(ge=0, default=0.0)
    """Seconds per prompt byte (the prompt is taken as 4 bytes a token)."""
    concurrency: int | None = Field(ge=1, default=None)
    """Requests the router works on at once (None: unlimited); the rest wait FCFS."""
    max_queue: int | None = Field(ge=0, default=None)
    """Requests that may wait for the router before it answers 503 (None: unbounded)."""
    interval_s: float | None = Field(ge=0.005, default=None)
    """Seconds between scrapes of the replicas' metrics (llm_d 0.05, least_loaded 0.05;
    power_of_two: compare scraped loads instead of router-local counts when set). At least
    0.005 (a tenth of llm-d's 50 ms poll): each scrape is an event of the simulation, so a far
    smaller value would only make a run crawl."""
    queue_weight: float = Field(ge=0, default=2.0)
    """llm_d: weight of the queue scorer."""
    kv_weight: float = Field(ge=0, default=2.0)
    """llm_d: weight of the KV-utilisation scorer."""
    prefix_weight: float = Field(ge=0, default=3.0)
    """llm_d: weight of the prefix-cache scorer."""
    block_chars: int = Field(ge=1, default=64)
    """llm_d: characters per block of the approximate prefix index (16 tokens x 4 chars)."""
    max_blocks: int = Field(ge=1, default=256)
    """llm_d: most blocks of a prompt hashed."""
    lru_blocks: int = Field(ge=1, default=31250)
    """llm_d: capacity of each replica's LRU in the approximate index."""
    chunk_chars: int = Field(ge=1, default=128)
    """prefix_trie: characters per chunk of the trie."""
    overlap_weight: float = Field(ge=0, default=1.0)
    """kv_cost: weight of the uncached prefill blocks (Dynamo overlap_score_weight)."""
    temperature: float = Field(ge=0, default=0.0)
    """kv_cost: softmax temperature (0: argmin)."""
    kv_block_tokens: int = Field(ge=1, default=16)
    """kv_cost: tokens per KV block in the router's count."""
    ttl_s: float = Field(gt=0, default=120.0)
    """kv_cost: how long the router believes a routed prefix stays cached (--no-kv-events)."""
    qps_window_s: float = Field(gt=0, default=60.0)
    """session: window of the router-local QPS used when a request has no session id."""
    sheddable_fraction: float = Field(ge=0, le=1, default=0.0)
    """llm_d: fraction of requests sent with a negative priority (sheddable); those are refused
    with HTTP 429 while the pool is saturated (mean over replicas of max(waiting/5, kv/0.8) >= 1
    on the last scrape). Default 0: llm-d sheds nothing at priority 0."""
    retries: int = Field(ge=0, default=0)
    """Client retries of a refused request (503/429; the OpenAI SDK makes 2), counted as
    attempts of the same request, never as new requests."""
    retry_backoff_s: float = Field(ge=0, default=0.5)
    """Wait before the first retry; doubled for each further one (exponential back-off)."""

    @model_validator(mode="after")
    def _interval_only_where_read(self) -> RouterSpec:
        if self.interval_s is not None and self.kind not in ("llm_d", "least_loaded", "power_of_two"):
            raise ValueError(
                f"interval_s is a scrape interval; router {self.kind!r} reads no scraped metrics "
                "(remove it, or use kind: llm_d, least_loaded or power_of_two)"
            )
        if self.sheddable_fraction and self.kind != "llm_d":
            raise ValueError("sheddable_fraction is llm-d's 429 shedding; use it with kind: llm_d or remove it")
        if self.kind in ("llm_d",) and self.queue_weight + self.kv_weight + self.prefix_weight == 0:
            raise ValueError("llm_d weights are all 0: give at least one scorer a positive weight (default 2, 2, 3)")
        return self

    @property
    def scrape_s(self) -> float | None:
        """The scrape interval in force (the router's default when not given)."""
        return self.interval_s if self.interval_s is not None else DEFAULT_INTERVAL_S.get(self.kind)
