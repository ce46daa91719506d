"""The fleet on one clock: the router station, the decisions, and one feed per replica.

Each replica runs its own server loop unchanged, reading its requests from a
:class:`ReplicaFeed` (a client in the sense of :class:`sim.servers.base.Client`). The loop
fast-forwards decode runs up to ``next_arrival_s()``, so what a feed answers there decides
both correctness and speed:

* **free** routers (own counters that move only when they route) on an open-loop workload:
  decisions are taken lazily, in arrival order, whenever some feed must know its next
  arrival; the feed then answers its exact next arrival and the replicas run undisturbed
  (the per-request cost class of one server);
* **scrape** routers: the same, for decisions before the next scrape; the fleet reads every
  replica at each scrape (an urgent event on the clock, so every replica's state is the state
  at that instant); a decision past the current snapshot is a barrier every feed reports;
* **live** routers (counters moved by completions or first tokens), and every router on a
  closed-loop workload (arrivals depend on completions): decisions are taken by an urgent
  event at their own time, when every replica has applied what happened before it; every
  feed reports the next decision as a barrier, so replicas stop there.

An urgent event at time t runs before any replica's event at t, and a replica whose pass
spans t has its state as at the start of that pass with no event inside it, so what the
router reads at t is the state at t. The router station is FCFS with an optional concurrency
cap; its departure times do not depend on the replicas, so they are computed on arrival.
"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Any, Protocol

import simpy
from simpy.core import URGENT

from sim.fleet.routers import FREE, LIVE, SCRAPE, RandomRouter, RoundRobin, Router, Snapshot
from sim.frontend import FrontendCost
from sim.recorder import Recorder
from sim.requests import Phase, Request, Status
from sim.scenario import RouterSpec
from sim.servers.base import Client, IterationServer
from sim.servers.paged import PagedScheduler
from sim.servers.request_level import RequestLevelServer
from sim.servers.slots import SlotScheduler
from sim.workload.clients import OpenLoopClient

__all__ = ["Fleet", "ReplicaFeed", "Station"]

INF = float("inf")
BYTES_PER_TOKEN = 4


class _Server(Protocol):
    wakeable: bool

    def kick(self) -> None: ...


class Station:
    """The router as a FCFS station: ``service_s + service_s_per_byte·bytes`` per request,
    ``concurrency`` at once (None: unlimited), at most ``max_queue`` waiting (else 503)."""

    def __init__(self, spec: RouterSpec) -> None:
        self.s0, self.s1 = spec.service_s, spec.service_s_per_byte
        self.free: list[float] | None = [0.0] * spec.concurrency if spec.concurrency else None
        self.max_queue = spec.max_queue
        self.starts: deque[float] = deque()  # start times of requests waiting (FCFS: sorted)
        self.rejected = 0

    def depart(self, request: Request, t: float) -> float:
        """When the router is done with ``request`` arriving at ``t`` (-1: refused, queue full)."""
        service = self.s0 + self.s1 * BYTES_PER_TOKEN * request.prompt_tokens
        free = self.free
        if free is None:
            return t + service
        starts = self.starts
        while starts and starts[0] <= t:
            starts.popleft()
        if self.max_queue is not None and len(starts) >= self.max_queue and free[0] > t:
            self.rejected += 1
            return -1.0
        start = max(t, heapq.heappop(free))
        heapq.heappush(free, start + service)
        if start > t:
            starts.append(start)
        return start + service


class ReplicaFeed:
    """One replica's view of the fleet: the requests routed to it, by delivery time."""

    def __init__(self, fleet: Fleet, index: int) -> None:
        self.fleet = fleet
        self.index = index
        self.heap: list[tuple[float, int, Request | int]] = []
        """(delivery time, order, request) -- or the request's index when the fleet keeps
        buffered requests compact (independent replicas run one after the other)."""
        self.server: _Server | None = None
        self.barriers = True
        """Whether the replica must stop at decisions it may not get (a fast-forwarding loop);
        a request-level server serves each request in its own process and needs only kicks."""

    def next_arrival_s(self) -> float:
        heap = self.heap
        if heap and heap[0][0] <= self.fleet.known_frontier:  # the common case, in one frame
            return heap[0][0]
        return self.fleet.next_for(self)

    def pop_arrivals(self, now: float) -> list[Request]:
        self.fleet.route_until(now)
        heap = self.heap
        out = []
        while heap and heap[0][0] <= now:
            request = heapq.heappop(heap)[2]
            out.append(self.fleet.reissue(request) if isinstance(request, int) else request)
        return out

    def on_done(self, request: Request, now: float) -> None:
        self.fleet.done(self.index, request, now)


class Fleet:
    """Routes the requests of ``client`` to ``n`` replica feeds on ``env``'s clock."""

    def __init__(self, env: simpy.Environment, client: Client, router: Router, spec: RouterSpec,
                 n: int, recorder: Recorder, *, closed_loop: bool) -> None:
        self.env = env
        self.client = client
        self.router = router
        self.station = Station(spec)
        self.min_service = spec.service_s
        self.recorder = recorder
        self.closed = closed_loop or spec.retries > 0  # arrivals depend on outcomes
        self.retries, self.backoff = spec.retries, spec.retry_backoff_s
        self.retry_heap: list[tuple[float, int, Request]] = []
        self.attempts: dict[int, int] = {}
        self.num_attempts = 0
        self.shed = 0
        self.shed_fraction = spec.sheddable_fraction
        self.shed_salt = spec.kind
        self.mode = router.mode if n > 1 else FREE  # one replica: nothing to read
        self.scrape_s = spec.scrape_s if self.mode == SCRAPE else None
        self.feeds = [ReplicaFeed(self, i) for i in range(n)]
        self.pending: list[tuple[float, int, Any]] = []  # through the station, not yet routed (a Request, or its index)
        self.seq = 0
        self.frontends: list[FrontendCost] = []
        """Each replica's front end (its API layer's delay before the engine sees a request)."""
        self.api_free = [0.0] * n
        self.compact = False
        """Buffer routed requests as indices (set when independent replicas run one by one)."""
        self.indices_only = False
        """With ``compact``: requests travel as indices from the client on (see _pull_indices)."""
        self.content_free = (isinstance(router, RoundRobin | RandomRouter) and not spec.service_s_per_byte
                             and spec.concurrency is None and not spec.retries)
        self.known_frontier = -1.0
        """The next decision's time while it is known not to move (lazy routers), else -1."""
        self.replica_of: dict[int, int] = {}
        self.routed = [0] * n
        self.valid_until = 0.0 if self.mode == SCRAPE else INF
        self.lazy = not self.closed and self.mode != LIVE
        self._wake_at = INF
        self._generation = 0
        self.servers: list[object] = []

    @property
    def independent(self) -> bool:
        """Whether the replicas never influence each other: an open-loop workload routed on the
        router's own counters (decided from the arrivals alone), without P/D or retries. Such
        replicas can each run on a clock of their own, one after the other."""
        return self.lazy and self.mode == FREE and len(self.feeds) > 1 and isinstance(self.client, OpenLoopClient)

    # the clock ---------------------------------------------------------------------------------
    def start(self, servers: list[object]) -> None:
        """Bind the replicas' servers (for snapshots and kicks) and schedule the first events."""
        self.servers = servers
        for feed, server in zip(self.feeds, servers, strict=True):
            if self.closed or self.mode == LIVE:
                server.wakeable = True  # type: ignore[attr-defined]
                feed.server = server  # type: ignore[assignment]
            feed.barriers = isinstance(server, IterationServer)
        if self.mode == SCRAPE:
            self._at(0.0, self._scrape)
        if not self.lazy:
            self._schedule_wake()

    def _at(self, t: float, callback: object) -> None:
        event = self.env.event()
        event.callbacks.append(callback)  # type: ignore[arg-type]
        event._ok = True
        event._value = None
        self.env.schedule(event, URGENT, max(t - self.env.now, 0.0))

    def _scrape(self, _event: object) -> None:
        now = self.env.now
        self.router.snapshots = [self.snapshot(i) for i in range(len(self.feeds))]
        assert self.scrape_s is not None
        self.valid_until = now + self.scrape_s
        if self.frontier() < INF or self.closed and self.router_inflight():
            self._at(self.valid_until, self._scrape)

    def router_inflight(self) -> bool:
        return any(self.router.inflight)

    def _schedule_wake(self) -> None:
        t = self.frontier()
        if t < self._wake_at:
            self._wake_at = t
            self._generation += 1
            generation = self._generation
            self._at(t, lambda _e: self._wake(generation))

    def _wake(self, generation: int) -> None:
        if generation != self._generation:
            return  # superseded by an earlier wake
        self._wake_at = INF
        now = self.env.now
        if self.closed:
            while self._next_arrival() <= now:
                self._pull()
        while self.pending and self.pending[0][0] <= now:
            self._route_one()
        self._schedule_wake()

    # decisions ---------------------------------------------------------------------------------
    def _next_arrival(self) -> float:
        retry = self.retry_heap[0][0] if self.retry_heap else INF
        t = self.client.next_arrival_s()
        return min(t, retry)

    def _pull_indices(self) -> None:
        """The compact path of :meth:`_pull`: the router and the station need nothing of the
        request but its arrival, so only its index travels (the request is built on delivery)."""
        client = self.client
        assert isinstance(client, OpenLoopClient)
        times, i = client.times, client.next
        t = times[i]
        delay, pending = self.min_service, self.pending
        while times[i] <= t:
            self.seq += 1
            heapq.heappush(pending, (t + delay, self.seq, i))
            i += 1
        self.num_attempts += i - client.next
        client.next = i

    def _pull(self) -> None:
        """Take the next arrivals (or retries) from the client through the router station."""
        self.known_frontier = -1.0
        if self.indices_only:
            self._pull_indices()
            return
        client, retries = self.client, self.retry_heap
        t = client.next_arrival_s()
        if retries and retries[0][0] < t:
            t = retries[0][0]
            batch = []
            while retries and retries[0][0] <= t:
                batch.append(heapq.heappop(retries)[2])
        else:
            batch = client.pop_arrivals(t)
        self.num_attempts += len(batch)
        for request in batch:
            d = self.station.depart(request, t)
            if d < 0:
                self._refuse(request, t)
                continue
            self.seq += 1
            heapq.heappush(self.pending, (d, self.seq, request))

    def _refuse(self, request: Request, t: float) -> None:
        self.recorder.arrive(request)
        self.recorder.finish(request, t, Status.REJECTED)
        if not self._retry(request, t):
            self.client.on_done(request, t)

    def _retry(self, request: Request, t: float) -> bool:
        """Send a refused request again after the back-off, if the client has retries left
        (the attempt is not a new request: its arrival is not counted again)."""
        k = self.attempts.get(request.id, 0)
        if k >= self.retries:
            return False
        self.attempts[request.id] = k + 1
        self.recorder.num_arrived -= 1
        request.phase = Phase.QUEUED
        self.seq += 1
        heapq.heappush(self.retry_heap, (t + self.backoff * 2**k, self.seq, request))
        self._schedule_wake()
        return True

    def _sheds(self, request: Request) -> bool:
        """llm-d's legacy admission: a sheddable request meets a saturated pool -> 429."""
        if not self.shed_fraction or (request.id * 0.6180339887498949) % 1.0 >= self.shed_fraction:
            return False
        snaps = self.router.snapshots
        saturation = sum(max(s.waiting / 5, s.kv_usage / 0.8) for s in snaps) / len(snaps)
        return saturation >= 1.0

    def frontier(self) -> float:
        """Time of the next decision (inf when no request is left to route)."""
        pending, client = self.pending, self.client
        if self.closed:
            top = pending[0][0] if pending else INF
            return min(top, self._next_arrival() + self.min_service)
        if self.known_frontier >= 0:
            return self.known_frontier
        while True:
            lower = client.next_arrival_s() + self.min_service
            if lower == INF or (pending and pending[0][0] <= lower):
                f = pending[0][0] if pending else INF
                self.known_frontier = f  # open loop: moves only when this fleet pulls or routes
                return f
            self._pull()

    def _route_one(self) -> None:
        self.known_frontier = -1.0
        d, seq, request = heapq.heappop(self.pending)
        router = self.router
        if self.shed_fraction and self._sheds(request):
            self.shed += 1
            router.count("shed_429")
            self._refuse(request, d)
            return
        i = router.choose(request, d)
        router.routed(request, i, d)
        rid = request if isinstance(request, int) else request.id
        self.replica_of[rid] = i
        self.routed[i] += 1
        feed = self.feeds[i]
        heapq.heappush(feed.heap, (self.api(i, d), seq, rid if self.compact else request))
        if feed.server is not None:
            feed.server.kick()

    def api(self, i: int, t: float) -> float:
        """When a request the router hands to replica ``i`` at ``t`` reaches its engine: after
        the replica's API layer (its front end's ``request_s``; in sending order with ``serial``),
        as :class:`sim.frontend.FrontendClient` does for a lone server."""
        fe = self.frontends[i] if self.frontends else None
        if fe is None or fe.request_s <= 0:
            return t
        if fe.serial:
            start = max(t, self.api_free[i])
            self.api_free[i] = start + fe.request_s
            return start + fe.request_s
        return t + fe.request_s

    def reissue(self, i: int) -> Request:
        """Request ``i`` again from the open-loop client (a compact buffer keeps only its index;
        the routers that allow it keep nothing of the request object)."""
        client = self.client
        assert isinstance(client, OpenLoopClient)
        return client.issuer.request(i, client.times[i])

    def next_for(self, feed: ReplicaFeed) -> float:
        """The feed's next arrival, or the next decision it must stop at."""
        heap = feed.heap
        while True:
            top = heap[0][0] if heap else INF
            f = self.frontier()
            if top <= f:
                return top
            if not self.lazy and (not feed.barriers or not self.router.inflight[feed.index]):
                return top  # idle: nothing to bring up to date; a routed request kicks it
            if not self.lazy or f >= self.valid_until:
                return f
            self._route_one()

    def route_until(self, now: float) -> None:
        """Take every decision due by ``now`` that may be taken now: ahead of the clock for lazy
        routers; otherwise those due no later than every other process's next event (whose
        states are then the states at the decision), asked by a replica that reached ``now``."""
        if self.lazy:
            while (f := self.frontier()) <= now and f < self.valid_until:
                self._route_one()
            return
        limit = min(now, self.env.peek())
        pending = self.pending
        while (f := self.frontier()) <= limit and f < self.valid_until:
            if self.closed:
                while self._next_arrival() <= f:
                    self._pull()
            while pending and pending[0][0] <= f:
                self._route_one()

    def done(self, index: int, request: Request, now: float) -> None:
        """A replica finished (or refused) a request: the router's counters, then the client."""
        self.router.done(request, index, now)
        if self.retries and self.recorder.status[request.id] == Status.REJECTED and self._retry(request, now):
            return
        self.client.on_done(request, now)
        if self.closed:
            self._schedule_wake()

    # what a scrape returns ---------------------------------------------------------------------
    def snapshot(self, i: int) -> Snapshot:
        """Replica ``i``'s metrics now (vLLM's num_requests_waiting/running, KV usage)."""
        server = self.servers[i]
        if isinstance(server, IterationServer):
            sched = server.scheduler
            running = sched.decode.num_seqs
            if isinstance(sched, PagedScheduler):
                pool = sched.pool
                running = len(sched.running)
                kv = 1.0 - pool.num_free / pool.num_blocks
            elif isinstance(sched, SlotScheduler):
                busy = sched.policy.num_slots - len(sched.free_slots)
                running, kv = busy, busy / sched.policy.num_slots
            else:
                kv = 0.0
            return Snapshot(sched.num_waiting, running, kv)
        assert isinstance(server, RequestLevelServer)
        inside = self.router.inflight[i]
        running = min(inside, server.num_slots)
        return Snapshot(inside - running, running, running / server.num_slots)
