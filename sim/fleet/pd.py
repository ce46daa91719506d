"""Disaggregated prefill/decode behind the fleet's router (FLEETS.md §6, vLLM NixlConnector).

The router picks the decode replica (llm-d runs its decode profile first); the prefill replica
is picked by round robin (the toy proxy and production-stack's orchestrated flow). The prompt
goes to P with ``max_tokens=1``: P queues and prefills it like any request. Once P has its
token, the KV (``kv_bytes_per_token`` x prompt tokens) moves over the link: with ``nixl_pull``
the proxy first gets P's answer and sends the request on to D (two hops), and D pulls the
whole KV (``setup_s + bytes/bandwidth``); with ``p2p_push`` P pushes it to D at once. D then
recomputes only the last prompt token (``num_computed_tokens = num_tokens - 1``) and decodes.
Prompts of at most ``threshold_tokens`` tokens skip P (llm-d's selective P/D), and a request P
could not serve (refused, timed out) falls back to a local prefill on D (the llm-d sidecar).

P holds the prompt's blocks until the transfer ends (as plain blocks: a prefix-cached copy
on P is not kept referenced). Simplification, said here once: D allocates its blocks when the
KV has arrived rather than before the pull (so D's KV is not held during the transfer,
milliseconds at the default link).
"""

from __future__ import annotations

import heapq

from sim.fleet.dispatch import Fleet, ReplicaFeed
from sim.recorder import Recorder
from sim.requests import Request, Status
from sim.scenario import KvTransferSpec
from sim.servers.paged import PagedScheduler

__all__ = ["PdFleet", "PrefillFeed", "transfer_s"]


def transfer_s(spec: KvTransferSpec, kv_bytes: float) -> float:
    """Seconds from P's first token to the KV being in D: ``setup + bytes/bandwidth``, plus the
    two proxy hops of the pull flow (P -> proxy -> D)."""
    hops = 2 * spec.hop_s if spec.connector == "nixl_pull" else 0.0
    return hops + spec.setup_s + kv_bytes / (spec.bandwidth_gb_s * 1e9)


class PrefillFeed(ReplicaFeed):
    """A prefill replica's feed: requests with ``max_tokens=1``; it never stops at decisions."""

    def next_arrival_s(self) -> float:
        heap = self.heap
        return heap[0][0] if heap else float("inf")

    def on_done(self, request: Request, now: float) -> None:
        fleet = self.fleet
        assert isinstance(fleet, PdFleet)
        fleet.prefilled(self.index, request, now)


class PdFleet(Fleet):
    """A fleet whose ``n`` replicas are the decode pool, with a prefill pool in front."""

    def setup_pd(self, num_prefill: int, spec: KvTransferSpec, kv_bytes_per_token: float, p_recorder: Recorder) -> None:
        """Add the prefill pool: its feeds, the link and the recorder of its 1-token requests."""
        self.p_feeds = [PrefillFeed(self, i) for i in range(num_prefill)]
        self.kv_spec = spec
        self.kv_per_token = kv_bytes_per_token
        self.p_recorder = p_recorder
        self.p_rr = 0
        self.p_routed = [0] * num_prefill
        self.target: dict[int, tuple[int, Request]] = {}
        self.transferred_bytes = 0.0
        self.local_prefills = 0
        self.fallbacks = 0
        self.closed = True  # D's arrivals depend on P's progress: decisions on the clock
        self.lazy = False

    def start_prefill(self, servers: list[object]) -> None:
        self.p_servers = servers
        for feed, server in zip(self.p_feeds, servers, strict=True):
            server.wakeable = True  # type: ignore[attr-defined]
            feed.server = server  # type: ignore[assignment]
            feed.barriers = False

    def _deliver(self, i: int, t: float, request: Request) -> None:
        self.seq += 1
        feed = self.feeds[i]
        heapq.heappush(feed.heap, (self.api(i, t), self.seq, request))
        if feed.server is not None:
            feed.server.kick()

    def _route_one(self) -> None:
        self.known_frontier = -1.0
        d, seq, request = heapq.heappop(self.pending)
        router = self.router
        i = router.choose(request, d)
        router.routed(request, i, d)
        self.replica_of[request.id] = i
        self.routed[i] += 1
        if request.prompt_tokens <= self.kv_spec.threshold_tokens:
            self.local_prefills += 1
            self._deliver(i, d, request)
            return
        p = self.p_rr % len(self.p_feeds)
        self.p_rr += 1
        self.p_routed[p] += 1
        self.target[request.id] = (i, request)
        one = Request(request.id, request.arrival_s, request.prompt_tokens, 1, request.deadline_s, request.user,
                      request.block_hashes, request.hash_block_tokens)
        feed = self.p_feeds[p]
        heapq.heappush(feed.heap, (d, seq, one))
        if feed.server is not None:
            feed.server.kick()

    def prefilled(self, p: int, one: Request, now: float) -> None:
        """P answered its 1-token request: move the KV to D, or fall back to a local prefill."""
        i, request = self.target.pop(one.id)
        if self.p_recorder.status[one.id] != Status.COMPLETED:
            self.fallbacks += 1
            self._deliver(i, now, request)
            return
        kv = self.kv_per_token * request.prompt_tokens
        self.transferred_bytes += kv
        request.computed = request.prompt_tokens - 1  # D recomputes the last token only
        xfer = transfer_s(self.kv_spec, kv)
        self._hold_on_prefill(p, request.prompt_tokens, xfer)
        self._deliver(i, now + xfer, request)

    def _hold_on_prefill(self, p: int, tokens: int, seconds: float) -> None:
        """P keeps the prompt's KV blocks until D has pulled them: taken back from P's pool the
        instant P released them, given back when the transfer ends."""
        server = self.p_servers[p]
        sched = getattr(server, "scheduler", None)
        if not isinstance(sched, PagedScheduler):
            return
        blocks = -(-tokens // sched.policy.block_size)
        if not sched.pool.allocate(blocks):
            return

        def give_back(_event: object) -> None:
            sched.pool.free(blocks)
            server.kick()  # type: ignore[attr-defined]

        self.env.timeout(seconds).callbacks.append(give_back)
