"""Paged KV cache: a pool of fixed-size blocks with a prefix cache keyed by block hash.

The pool counts blocks rather than naming them: the simulator needs to know whether an
allocation fits, which blocks are shared and what can be evicted, never where a block lives.
Blocks cached for prefix reuse (vLLM ``enable_prefix_caching``) stay reusable while nobody
holds them and are evicted least-recently-freed first when plain blocks run out::

    num_blocks = held blocks + never-cached free blocks + evictable cached blocks
                               \\____________ num_free ______________________/
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence

__all__ = ["BlockPool"]


class BlockPool:
    """KV blocks of a paged server (vLLM's ``BlockPool``, counted rather than named)."""

    def __init__(self, num_blocks: int, enable_prefix_caching: bool = False) -> None:
        if num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
        self.num_blocks = num_blocks
        self.num_free = num_blocks
        self.enable_prefix_caching = enable_prefix_caching
        self._refs: dict[Hashable, int] = {}
        self._evictable: OrderedDict[Hashable, None] = OrderedDict()
        self.num_hit_blocks = 0
        self.num_queried_blocks = 0

    def allocate(self, n: int) -> bool:
        """Take ``n`` blocks; False (and nothing taken) when fewer than ``n`` are free."""
        if n > self.num_free:
            return False
        if self._evictable:
            plain_free = self.num_free - len(self._evictable)
            for _ in range(max(0, n - plain_free)):  # evict least recently freed cached blocks
                key, _ = self._evictable.popitem(last=False)
                del self._refs[key]
        self.num_free -= n
        return True

    def free(self, n: int) -> None:
        """Return ``n`` plain (unhashed) blocks."""
        self.num_free += n
        assert self.num_free <= self.num_blocks, "freed more blocks than were held"

    # prefix cache -------------------------------------------------------------------------
    def lookup(self, keys: Sequence[Hashable]) -> int:
        """How many leading ``keys`` are cached (a hit needs every earlier block to hit too)."""
        self.num_queried_blocks += len(keys)
        hits = 0
        for key in keys:
            if key not in self._refs:
                break
            hits += 1
        self.num_hit_blocks += hits
        return hits

    def acquire(self, keys: Sequence[Hashable]) -> None:
        """Take a reference on cached blocks found by :meth:`lookup`."""
        for key in keys:
            if key in self._evictable:
                del self._evictable[key]
                self.num_free -= 1
            self._refs[key] += 1

    def register(self, key: Hashable) -> bool:
        """Mark one held block as cached under ``key``; False if ``key`` is already cached."""
        if key in self._refs:
            return False
        self._refs[key] = 1
        return True

    def release(self, keys: Sequence[Hashable]) -> None:
        """Drop references; blocks nobody holds become evictable (and count as free)."""
        for key in keys:
            refs = self._refs[key] - 1
            self._refs[key] = refs
            if refs == 0:
                self._evictable[key] = None
                self.num_free += 1
