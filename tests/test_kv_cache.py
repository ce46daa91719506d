"""Hypothesis state machine for the paged KV block pool, with prefix caching."""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from sim.kv_cache import BlockPool

KEYS = st.lists(st.integers(0, 12), min_size=1, max_size=6, unique=True)


class BlockPoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pool = BlockPool(num_blocks=24, enable_prefix_caching=True)
        self.plain: dict[int, int] = {}
        self.keys: dict[int, list[int]] = {}

    @rule(owner=st.integers(0, 5), n=st.integers(1, 8))
    def allocate(self, owner: int, n: int) -> None:
        free = self.pool.num_free
        ok = self.pool.allocate(n)
        assert ok == (n <= free)
        if ok:
            self.plain[owner] = self.plain.get(owner, 0) + n

    @rule(owner=st.integers(0, 5), keys=KEYS)
    def cache_prefix(self, owner: int, keys: list[int]) -> None:
        hits = self.pool.lookup(keys)
        self.pool.acquire(keys[:hits])
        self.keys.setdefault(owner, []).extend(keys[:hits])
        for key in keys[hits:]:  # compute the rest into fresh blocks and register them
            if not self.pool.allocate(1):
                break
            if self.pool.register(key):
                self.keys[owner].append(key)
            else:
                self.plain[owner] = self.plain.get(owner, 0) + 1

    @rule(owner=st.integers(0, 5))
    def free(self, owner: int) -> None:
        self.pool.free(self.plain.pop(owner, 0))
        self.pool.release(self.keys.pop(owner, []))

    @invariant()
    def blocks_are_conserved(self) -> None:
        held = sum(self.plain.values()) + len({k for ks in self.keys.values() for k in ks})
        assert self.pool.num_free + held == self.pool.num_blocks

    @invariant()
    def a_held_key_is_never_evicted(self) -> None:
        for keys in self.keys.values():
            for key in keys:
                assert key in self.pool._refs and key not in self.pool._evictable


TestBlockPool = BlockPoolMachine.TestCase
