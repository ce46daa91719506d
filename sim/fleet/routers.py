"""Routing rules, each seeing only what the real router sees (FLEETS.md §1-§4).

A router picks a replica for a request from what it holds itself: its own counters (round
robin index, in-flight counts, QPS, a prefix index built from its own decisions) and, for the
rules that read engine metrics, the last scraped :class:`Snapshot` of every replica. Which
of those a rule needs decides how the fleet drives the replicas (see :mod:`sim.fleet.dispatch`):

* ``FREE``: own counters that move only when it routes (round_robin, random, session,
  prefix_trie): decisions can be taken ahead of time, the replicas run undisturbed;
* ``SCRAPE``: a snapshot per interval plus own counters (llm_d, least_loaded, power_of_two
  with ``interval_s``): the replicas are read at each scrape;
* ``LIVE``: counters that move on completions or first tokens (least_outstanding,
  power_of_two, kv_cost): decisions are taken at their time with every replica brought there.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass

from sim.requests import Request
from sim.scenario import RouterSpec

__all__ = ["FREE", "LIVE", "SCRAPE", "Router", "Snapshot", "make_router", "prefix_keys"]

FREE, SCRAPE, LIVE = "free", "scrape", "live"
CHARS_PER_TOKEN = 4
"""Prompt characters per token, as llm-d's approximate prefix index assumes (FLEETS.md §2)."""


@dataclass(slots=True)
class Snapshot:
    """What a metrics scrape of one replica returns (vLLM: num_requests_waiting/running,
    kv_cache_usage_perc)."""

    waiting: int = 0
    running: int = 0
    kv_usage: float = 0.0


def prefix_keys(request: Request, block_tokens: int, max_blocks: int = 1 << 30) -> list[object]:
    """Keys of the prompt's leading blocks of ``block_tokens`` tokens (the trailing partial
    block included), each identifying the whole prefix up to its end.

    The prompt text is not simulated: a block's key is the workload's prefix-block hash of the
    hash block holding its last token (the workload's hashes identify a prefix), with the block
    index; tokens past the hashed part get keys of their own request (never shared).
    """
    n = min(-(-request.prompt_tokens // block_tokens), max_blocks)
    hashes, per = request.block_hashes, request.hash_block_tokens
    keys: list[object] = []
    for k in range(n):
        j = (min((k + 1) * block_tokens, request.prompt_tokens) - 1) // per if per else len(hashes)
        keys.append((hashes[j], k) if j < len(hashes) else (-1 - request.id, k))
    return keys


class Router:
    """Base: ``choose`` picks a replica; the hooks keep the router's own counters."""

    mode = FREE

    def __init__(self, spec: RouterSpec, n: int, seed: int) -> None:
        self.spec = spec
        self.n = n
        self.rng = random.Random(seed)
        self.inflight = [0] * n
        self.snapshots = [Snapshot() for _ in range(n)]
        self.decisions: dict[str, int] = {}

    def count(self, reason: str) -> None:
        """Count a decision by the reason it was taken (reported with the results)."""
        self.decisions[reason] = self.decisions.get(reason, 0) + 1

    def choose(self, request: Request, now: float) -> int:
        raise NotImplementedError

    def routed(self, request: Request, replica: int, now: float) -> None:
        self.inflight[replica] += 1

    def done(self, request: Request, replica: int, now: float) -> None:
        self.inflight[replica] -= 1

    def _argbest(self, values: Sequence[float], best: float) -> int:
        """A uniformly random index among those whose value is ``best``."""
        ties = [i for i, v in enumerate(values) if v == best]
        return ties[0] if len(ties) == 1 else self.rng.choice(ties)


class RoundRobin(Router):
    def __init__(self, spec: RouterSpec, n: int, seed: int) -> None:
        super().__init__(spec, n, seed)
        self.idx = 0

    def choose(self, request: Request, now: float) -> int:
        i = self.idx % self.n
        self.idx += 1
        return i


class RandomRouter(Router):
    def choose(self, request: Request, now: float) -> int:
        return self.rng.randrange(self.n)


class LeastOutstanding(Router):
    """nginx ``least_conn`` / LiteLLM least-busy: fewest router-tracked in-flight requests;
    ties go round robin (nginx)."""

    mode = LIVE

    def __init__(self, spec: RouterSpec, n: int, seed: int) -> None:
        super().__init__(spec, n, seed)
        self.rr = 0

    def choose(self, request: Request, now: float) -> int:
        counts = self.inflight
        low = min(counts)
        n = self.n
        for j in range(n):
            i = (self.rr + j) % n
            if counts[i] == low:
                self.rr = i + 1
                return i
        raise AssertionError


class PowerOfTwo(Router):
    """Two distinct replicas drawn uniformly, the one with fewer requests (router-local
    in-flight counts, or scraped waiting + running when ``interval_s`` is set); ties random."""

    def __init__(self, spec: RouterSpec, n: int, seed: int) -> None:
        super().__init__(spec, n, seed)
        self.mode = SCRAPE if spec.interval_s is not None else LIVE

    def choose(self, request: Request, now: float) -> int:
        if self.n == 1:
            return 0
        a, b = self.rng.sample(range(self.n), 2)
        if self.mode == SCRAPE:
            la = self.snapshots[a].waiting + self.snapshots[a].running
            lb = self.snapshots[b].waiting + self.snapshots[b].running
        else:
            la, lb = self.inflight[a], self.inflight[b]
        return a if la < lb else b if lb < la else self.rng.choice((a, b))


class LeastLoaded(Router):
    """Join the shortest queue as last scraped (waiting + running): herds when the scrape is old
    (Mitzenmacher 2000)."""

    mode = SCRAPE

    def choose(self, request: Request, now: float) -> int:
        loads = [s.waiting + s.running for s in self.snapshots]
        return self._argbest(loads, min(loads))


class Session(Router):
    """vLLM production-stack ``session``: consistent hash ring over the replicas on the session
    id (the client's user); no id: the replica with the lowest router-local QPS."""

    VNODES = 40

    def __init__(self, spec: RouterSpec, n: int, seed: int) -> None:
        super().__init__(spec, n, seed)
        ring = sorted((self._hash(f"replica-{i}-{v}"), i) for i in range(n) for v in range(self.VNODES))
        self.ring_keys = [k for k, _ in ring]
        self.ring_nodes = [i for _, i in ring]
        self.recent: list[deque[float]] = [deque() for _ in range(n)]

    @staticmethod
    def _hash(text: str) -> int:
        return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")

    def choose(self, request: Request, now: float) -> int:
        if request.user >= 0:
            self.count("session_hash")
            j = bisect.bisect(self.ring_keys, self._hash(f"session-{request.user}")) % len(self.ring_keys)
            return self.ring_nodes[j]
        self.count("lowest_qps")
        window = self.spec.qps_window_s
        for q in self.recent:
            while q and q[0] <= now - window:
                q.popleft()
        for i, q in enumerate(self.recent):
            if not q:
                return i  # first endpoint with no recorded stats
        return min(range(self.n), key=lambda i: len(self.recent[i]))

    def routed(self, request: Request, replica: int, now: float) -> None:
        super().routed(request, replica, now)
        self.recent[replica].append(now)


class PrefixTrie(Router):
    """vLLM production-stack ``prefixaware``: 128-character chunks in a trie of replica sets
    (no eviction); the deepest match wins (random among its replicas); a miss is uniform random."""

    def __init__(self, spec: RouterSpec, n: int, seed: int) -> None:
        super().__init__(spec, n, seed)
        self.block_tokens = max(1, spec.chunk_chars // CHARS_PER_TOKEN)
        self.nodes: dict[object, set[int]] = {}
        self._keys: list[object] = []

    def choose(self, request: Request, now: float) -> int:
        self._keys = keys = prefix_keys(request, self.block_tokens)
        best: set[int] | None = None
        for key in keys:
            holders = self.nodes.get(key)
            if not holders:
                break
            best = holders
        if best is None:
            self.count("miss_random")
            return self.rng.randrange(self.n)
        self.count("prefix_hit")
        return next(iter(best)) if len(best) == 1 else self.rng.choice(sorted(best))

    def routed(self, request: Request, replica: int, now: float) -> None:
        super().routed(request, replica, now)
        for key in self._keys:
            self.nodes.setdefault(key, set()).add(replica)


class LlmD(Router):
    """llm-d EPP default profile: ``w_q·queue + w_kv·kv + w_p·prefix``, max score, ties random;
    queue and KV from the scrape, prefix from an approximate index of its own decisions
    (64-character blocks, at most 256, per-replica LRU)."""

    mode = SCRAPE

    def __init__(self, spec: RouterSpec, n: int, seed: int) -> None:
        super().__init__(spec, n, seed)
        self.block_tokens = max(1, spec.block_chars // CHARS_PER_TOKEN)
        self.lru: list[OrderedDict[object, None]] = [OrderedDict() for _ in range(n)]
        self._keys: list[object] = []

    def scores(self, request: Request) -> list[float]:
        """Total score of every replica for ``request`` (the arithmetic of FLEETS.md §2)."""
        s = self.spec
        self._keys = keys = prefix_keys(request, self.block_tokens, s.max_blocks)
        queues = [snap.waiting for snap in self.snapshots]
        return weighted_scores(queues, [snap.kv_usage for snap in self.snapshots],
                               self.prefix_scores(keys), s.queue_weight, s.kv_weight, s.prefix_weight)

    def prefix_scores(self, keys: list[object]) -> list[float]:
        """matchBlocks/totalBlocks per replica: walk the blocks while any replica holds one."""
        matched = [0] * self.n
        for key in keys:
            hit = False
            for i, lru in enumerate(self.lru):
                if key in lru:
                    matched[i] += 1
                    hit = True
            if not hit:
                break
        total = len(keys) or 1
        return [m / total for m in matched]

    def choose(self, request: Request, now: float) -> int:
        scores = self.scores(request)
        best = max(scores)
        i = self._argbest(scores, best)
        self.count("prefix_affinity" if self.prefix_scores(self._keys)[i] > 0 else "load")
        return i

    def routed(self, request: Request, replica: int, now: float) -> None:
        super().routed(request, replica, now)
        lru, cap = self.lru[replica], self.spec.lru_blocks
        for key in self._keys:
            if key in lru:
                lru.move_to_end(key)
            else:
                lru[key] = None
                if len(lru) > cap:
                    lru.popitem(last=False)


def weighted_scores(queues: list[int], kv: list[float], prefix: list[float],
                    wq: float, wkv: float, wp: float) -> list[float]:
    """llm-d's total score per replica: queue scorer ``(maxQ - q)/(maxQ - minQ)`` (all equal: 1),
    KV scorer ``1 - kv``, prefix scorer as given; each clamped to [0, 1], weighted and summed."""
    hi, lo = max(queues), min(queues)
    out = []
    for q, k, p in zip(queues, kv, prefix, strict=True):
        qs = 1.0 if hi == lo else (hi - q) / (hi - lo)
        out.append(wq * qs + wkv * min(1.0, max(0.0, 1.0 - k)) + wp * min(1.0, max(0.0, p)))
    return out


class KvCost(Router):
    """Dynamo KV router: ``cost = w·uncached prefill blocks + decode blocks``, both counted by the
    router (route / first token / completion); argmin with random ties, or softmax at T > 0.
    Residency is predicted from its own routing with a TTL (``--no-kv-events``)."""

    mode = LIVE

    def __init__(self, spec: RouterSpec, n: int, seed: int) -> None:
        super().__init__(spec, n, seed)
        self.bs = spec.kv_block_tokens
        self.cached: list[dict[object, float]] = [{} for _ in range(n)]
        self.prefilling: list[dict[int, tuple[Request, int]]] = [{} for _ in range(n)]
        self.decode_blocks = [0] * n
        self._keys: list[object] = []

    def costs(self, request: Request, now: float) -> list[float]:
        """Cost of sending ``request`` to each replica."""
        self._keys = keys = prefix_keys(request, self.bs)
        ttl = self.spec.ttl_s
        new_blocks = -(-request.prompt_tokens // self.bs)
        out = []
        for i in range(self.n):
            pending = self.prefilling[i]
            for rid in [r for r, (req, _) in pending.items() if 0 <= req.first_token_s <= now]:
                del pending[rid]  # the router saw its first token
            active = sum(t for _, t in pending.values())
            cache = self.cached[i]
            overlap = 0
            for key in keys:
                t = cache.get(key)
                if t is None or now - t > ttl:
                    break
                overlap += 1
            uncached = max(0.0, (active + request.prompt_tokens) / self.bs - overlap)
            out.append(kv_cost(uncached, self.decode_blocks[i] + new_blocks, self.spec.overlap_weight))
        return out

    def choose(self, request: Request, now: float) -> int:
        costs = self.costs(request, now)
        return pick_by_cost(costs, self.spec.temperature, self.rng)

    def routed(self, request: Request, replica: int, now: float) -> None:
        super().routed(request, replica, now)
        cache = self.cached[replica]
        overlap = 0
        for key in self._keys:
            if key in cache and now - cache[key] <= self.spec.ttl_s:
                overlap += 1
            cache[key] = now
        self.prefilling[replica][request.id] = (request, max(0, request.prompt_tokens - overlap * self.bs))
        self.decode_blocks[replica] += -(-request.prompt_tokens // self.bs)

    def done(self, request: Request, replica: int, now: float) -> None:
        super().done(request, replica, now)
        self.prefilling[replica].pop(request.id, None)
        self.decode_blocks[replica] -= -(-request.prompt_tokens // self.bs)


def kv_cost(prefill_blocks: float, decode_blocks: float, overlap_weight: float = 1.0) -> float:
    """Dynamo's worker cost: ``overlap_weight · prefill_blocks + decode_blocks``."""
    return overlap_weight * prefill_blocks + decode_blocks


def pick_by_cost(costs: list[float], temperature: float, rng: random.Random) -> int:
    """Dynamo's selection: argmin with uniform ties at T = 0; else softmax over min-max
    normalised costs, ``p ∝ exp(-(c - c_min)/((c_max - c_min)·T))`` (all equal: uniform)."""
    lo, hi = min(costs), max(costs)
    if temperature == 0 or hi == lo:
        ties = [i for i, c in enumerate(costs) if c == lo] if temperature == 0 else list(range(len(costs)))
        return ties[0] if len(ties) == 1 else rng.choice(ties)
    weights = [math.exp(-(c - lo) / ((hi - lo) * temperature)) for c in costs]
    return rng.choices(range(len(costs)), weights)[0]


ROUTERS: dict[str, type[Router]] = {
    "round_robin": RoundRobin, "random": RandomRouter, "least_outstanding": LeastOutstanding,
    "power_of_two": PowerOfTwo, "least_loaded": LeastLoaded, "session": Session,
    "prefix_trie": PrefixTrie, "llm_d": LlmD, "kv_cost": KvCost,
}


def make_router(spec: RouterSpec, n: int, seed: int) -> Router:
    """The router a spec names, over ``n`` replicas."""
    return ROUTERS[spec.kind](spec, n, seed)
