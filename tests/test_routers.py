"""Routing rules on the worked examples of FLEETS.md (§2 llm-d, §3 Dynamo) and prefix affinity."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from sim.fleet.routers import (
    LlmD,
    PrefixTrie,
    Session,
    Snapshot,
    kv_cost,
    make_router,
    pick_by_cost,
    weighted_scores,
)
from sim.requests import Request
from sim.scenario import RouterSpec
from sim.simulation import run_server
from tests.helpers import tiny_scenario


def _request(i: int, prefix: int, blocks: int = 40, user: int = -1) -> Request:
    """A request whose first ``blocks`` 16-token blocks belong to conversation ``prefix``."""
    hashes = tuple((prefix << 20) + b for b in range(blocks))
    return Request(i, 0.0, 16 * blocks, 8, user=user, block_hashes=hashes, hash_block_tokens=16)


def test_llm_d_scorers_on_the_worked_example() -> None:
    """Queues (0, 3, 6) score (1, .5, 0); KV use (.2, .5, .9) scores (.8, .5, .1); weights 2/2/3."""
    totals = weighted_scores([0, 3, 6], [0.2, 0.5, 0.9], [0.0, 1.0, 0.5], 2, 2, 3)
    expected = [2 * 1 + 2 * 0.8 + 0, 2 * 0.5 + 2 * 0.5 + 3 * 1.0, 0 + 2 * 0.1 + 3 * 0.5]
    assert totals == pytest.approx(expected)
    assert weighted_scores([4, 4], [0.3, 0.3], [0, 0], 2, 2, 3) == pytest.approx([2 + 1.4, 2 + 1.4])  # all equal: 1


def test_llm_d_ties_are_uniform_and_the_best_score_wins() -> None:
    router = LlmD(RouterSpec(kind="llm_d"), 4, seed=1)
    picks = [router.choose(_request(i, prefix=i), 0.0) for i in range(4000)]  # no affinity, equal loads
    counts = np.bincount(picks, minlength=4)
    assert np.all(np.abs(counts - 1000) < 4 * math.sqrt(4000 * 0.25 * 0.75))
    router.snapshots = [Snapshot(5, 0, 0.5), Snapshot(0, 0, 0.1), Snapshot(2, 0, 0.2), Snapshot(9, 0, 0.9)]
    assert router.choose(_request(9999, prefix=9999), 0.0) == 1


def test_dynamo_cost_on_the_doc_example() -> None:
    """(prefill, decode) blocks (8, 10), (5, 5), (2, 9) cost 18, 10, 11: worker 2 (index 1)."""
    costs = [kv_cost(p, d) for p, d in ((8, 10), (5, 5), (2, 9))]
    assert costs == [18, 10, 11]
    assert pick_by_cost(costs, 0.0, random.Random(0)) == 1


def test_dynamo_softmax_frequencies() -> None:
    """At T > 0: p_w ∝ exp(-(c_w - c_min)/((c_max - c_min)·T))."""
    costs, t, n = [0.0, 5.0, 10.0], 0.5, 30000
    rng = random.Random(3)
    counts = np.bincount([pick_by_cost(costs, t, rng) for _ in range(n)], minlength=3)
    w = np.exp(-(np.array(costs) - 0) / (10 * t))
    p = w / w.sum()
    assert np.all(np.abs(counts - n * p) < 4 * np.sqrt(n * p * (1 - p)))
    assert pick_by_cost([3.0, 3.0], 0.7, rng) in (0, 1)


def test_prefix_trie_sticks_and_misses_are_uniform() -> None:
    router = PrefixTrie(RouterSpec(kind="prefix_trie"), 8, seed=2)
    first = {}
    for conv in range(400):
        req = _request(conv, prefix=conv)
        i = router.choose(req, 0.0)
        router.routed(req, i, 0.0)
        first[conv] = i
    counts = np.bincount(list(first.values()), minlength=8)
    assert np.all(np.abs(counts - 50) < 4 * math.sqrt(400 / 8 * 7 / 8))  # misses: uniform
    for conv in range(0, 400, 7):  # a later turn (longer prompt, same prefix) sticks
        req = _request(1000 + conv, prefix=conv, blocks=60)
        assert router.choose(req, 0.0) == first[conv]
    assert router.decisions["prefix_hit"] == len(range(0, 400, 7)) and router.decisions["miss_random"] == 400


def test_llm_d_prefix_affinity_and_lru_forgetting() -> None:
    spec = RouterSpec(kind="llm_d", lru_blocks=100)
    router = LlmD(spec, 4, seed=0)
    req = _request(0, prefix=1, blocks=40)  # 640 tokens = 40 blocks of 64 characters
    home = router.choose(req, 0.0)
    router.routed(req, home, 0.0)
    assert router.choose(_request(1, prefix=1), 0.0) == home  # prefix score 3 beats any tie
    for k in range(3):  # 120 more blocks on the same replica push the first 40 out of its LRU
        other = _request(10 + k, prefix=100 + k)
        router.routed(other, home, 0.0)
        router.scores(other)
    assert router.prefix_scores(router.scores(_request(2, prefix=1)) and router._keys)[home] == 0.0


def test_session_hash_is_consistent() -> None:
    router = Session(RouterSpec(kind="session"), 6, seed=0)
    homes = {u: router.choose(_request(u, prefix=u, user=u), 0.0) for u in range(300)}
    assert all(router.choose(_request(1000 + u, prefix=u, user=u), 1.0) == homes[u] for u in range(300))
    assert len(set(homes.values())) == 6
    bigger = Session(RouterSpec(kind="session"), 7, seed=0)  # consistent hashing: few sessions move
    moved = sum(bigger.choose(_request(u, prefix=u, user=u), 0.0) != homes[u] for u in range(300))
    assert moved < 300 * 0.3


def test_prefix_aware_routing_raises_the_fleet_hit_rate() -> None:
    """Multi-turn conversations on four prefix-caching replicas: prefix_trie and llm_d keep a
    conversation where its KV is; random scatters it."""
    def hit_rate(kind: str) -> float:
        server = {"kind": "paged_batching", "num_kv_blocks": 2000, "max_num_seqs": 32, "enable_prefix_caching": True,
                  "replicas": 4, "router": {"kind": kind}}
        result = run_server(tiny_scenario(server, arrival={"kind": "closed_loop", "users": 16, "turns": 5},
                                          prompt=200, output=40, num_requests=800, step_s=None))
        rec = result.recorder
        return float(rec.cached_tokens.sum() / rec.prompt_tokens.sum())

    scattered, trie, llmd = hit_rate("random"), hit_rate("prefix_trie"), hit_rate("llm_d")
    assert trie > scattered + 0.2 and llmd > scattered + 0.2


def test_every_router_is_made_by_name() -> None:
    for kind in ("round_robin", "random", "least_outstanding", "power_of_two", "least_loaded", "session",
                 "prefix_trie", "llm_d", "kv_cost"):
        assert make_router(RouterSpec(kind=kind), 3, 0).choose(_request(0, 0), 0.0) in range(3)
