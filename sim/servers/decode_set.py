"""The decoding set, advanced implicitly: O(1) per pass, O(log n) per request.

Every running request that is past its prompt gains one token per pass. Rather than touching
each of them every pass, the set keeps

* a pass counter ``n`` (passes the set has taken part in),
* for each member a key ``k`` such that its context in the pass ``n -> n+1`` is ``k + n``,
  so the set's total context is ``sum(k) + D*n`` (a running sum),
* a heap of members keyed by the pass count at which each next needs attention (it finishes,
  or its context reaches a limit),
* for paged KV, how many members sit at each residue of ``k`` modulo the block size, which says
  how many new blocks the next passes need without visiting anyone::

      stored tokens before pass n->n+1:  k + n - 1
      a new block is needed iff          (k + n - 1) % block_size == 0
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from itertools import accumulate

from sim.requests import Phase, Request

__all__ = ["DecodeSet"]


class DecodeSet:
    """Running requests that decode one token per pass."""

    __slots__ = ("_heap", "_pushes", "_residue", "block_size", "key_sum", "n", "num_seqs")

    def __init__(self, block_size: int = 1) -> None:
        self.n = 0
        self.num_seqs = 0
        self.key_sum = 0
        self.block_size = block_size
        self._residue = [0] * block_size
        self._heap: list[tuple[int, int, int, Request]] = []
        self._pushes = 0

    # membership -----------------------------------------------------------------------------
    def add(self, request: Request, limit_at: int | None = None) -> None:
        """Join with ``request.generated`` tokens already sampled (the first one at least).

        ``limit_at`` is a pass count at which the request needs attention before finishing
        (its context limit); the earlier of that and its natural finish is scheduled.
        """
        request.phase = Phase.DECODE
        key = request.prompt_tokens + request.generated - self.n
        request.key = key
        finish_at = self.n + request.output_tokens - request.generated
        self.num_seqs += 1
        self.key_sum += key
        self._residue[key % self.block_size] += 1
        self._push(request, finish_at if limit_at is None else min(finish_at, limit_at))

    def _push(self, request: Request, event_at: int) -> None:
        self._pushes += 1
        request.event_at = event_at
        request.heap_entry = self._pushes
        heapq.heappush(self._heap, (event_at, request.id, self._pushes, request))

    def remove(self, request: Request) -> None:
        """Take a member out (finished, cancelled or preempted); brings ``generated`` up to date.

        The caller sets the request's new phase; its heap entry is stale from now on.
        """
        key = request.key
        request.generated = key + self.n - request.prompt_tokens + request.discarded
        self.num_seqs -= 1
        self.key_sum -= key
        self._residue[key % self.block_size] -= 1
        request.heap_entry = 0

    def rekey(self, request: Request, new_key: int, event_at: int) -> None:
        """Change a member's context key (a context shift) and its next event."""
        self.key_sum += new_key - request.key
        self._residue[request.key % self.block_size] -= 1
        self._residue[new_key % self.block_size] += 1
        request.key = new_key
        self._push(request, event_at)

    def generated(self, request: Request) -> int:
        """Tokens the member has sampled so far."""
        return request.key + self.n - request.prompt_tokens + request.discarded

    # aggregate state --------------------------------------------------------------------------
    @property
    def context_tokens(self) -> int:
        """Tokens attended by the set in the next pass."""
        return self.key_sum + self.num_seqs * self.n

    def members(self) -> list[Request]:
        """Current members, in no particular order (O(n): for rare slow paths only)."""
        return [entry[3] for entry in self._heap if entry[3].heap_entry == entry[2]]

    def stored_tokens(self, request: Request) -> int:
        """KV tokens a member holds before the next pass."""
        return request.key + self.n - 1

    def next_event_at(self) -> int | None:
        """Pass count of the next member event, skipping stale entries."""
        heap = self._heap
        while heap and heap[0][3].heap_entry != heap[0][2]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self) -> list[Request]:
        """Members whose event is due at the current pass count, in request-id order."""
        due = []
        heap, n = self._heap, self.n
        while heap:
            at, _, entry, request = heap[0]
            if request.heap_entry == entry:  # (else a stale entry: drop it)
                if at > n:
                    break
                due.append(request)
            heapq.heappop(heap)
        return due

    def new_blocks(self, passes: int, first: int = 0) -> int:
        """Blocks the members need for passes ``first .. passes-1`` from now.

        Whole cycles of ``block_size`` passes cost one block per member; the passes left over
        read a window of consecutive residues (backwards, wrapping round), summed as slices.
        """
        bs = self.block_size
        if bs == 1:
            return self.num_seqs * (passes - first)
        full, rest = divmod(passes - first, bs)
        residue = self._residue
        top = (1 - self.n - first) % bs  # residue needing a block in pass ``first``
        low = top - rest + 1
        if low >= 0:
            return full * self.num_seqs + sum(residue[low : top + 1])
        return full * self.num_seqs + sum(residue[: top + 1]) + sum(residue[low + bs :])

    def passes_within_blocks(self, free_blocks: int, first: int = 1, at_most: int = 1 << 62) -> int:
        """Largest K in [first, at_most] whose passes ``first .. K-1`` need at most ``free_blocks``.

        Every ``block_size`` passes each member needs exactly one block, so whole cycles cost
        ``num_seqs`` blocks each; within the last cycle a prefix sum over the residues says
        how far the rest goes. When the whole cycles alone reach ``at_most`` (blocks are
        plentiful, the usual case) the residues are not looked at.
        """
        if self.num_seqs == 0:
            return at_most
        bs = self.block_size
        cycles, rest = divmod(free_blocks, self.num_seqs)
        if bs == 1:
            return min(at_most, first + cycles)
        if first + cycles * bs >= at_most:
            return at_most
        residue, start = self._residue, 1 - self.n - first
        prefix = list(accumulate(residue[(start - j) % bs] for j in range(bs)))
        return min(at_most, first + cycles * bs + bisect_right(prefix, rest))
