"""vLLM: paged KV blocks, a per-pass token budget, and preemption by recompute.

V1 (``vllm/v1/core/sched/scheduler.py``, ENGINES.md A.3.3): running requests are served first
in admission order (decodes, and a prompt still being chunked), then waiting requests while
``max_num_seqs`` and the token budget allow and no request was preempted in this pass. When KV
blocks run out, the most recently admitted running request is preempted: its blocks are freed,
its progress reset, and it goes back to the front of the waiting queue (recompute).

V0 (``vllm/core/scheduler.py`` default path): a pass is either all prompts (as many whole
prompts as fit, decodes stall) or all decodes.

Decoding requests are not visited per pass: the decode set counts how many cross a block
boundary at each pass (see :mod:`sim.servers.decode_set`), so the common case allocates the
pass's blocks in one call and only a pass that runs out of blocks walks the running list.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from sim.kv_cache import BlockPool
from sim.requests import Phase, Request, Status
from sim.servers.base import Scheduler, Step

__all__ = ["PagedPolicy", "PagedScheduler"]


@dataclass(frozen=True)
class PagedPolicy:
    """Knobs of a paged continuous-batching server (vLLM's names)."""

    num_blocks: int
    block_size: int = 16
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 2048
    max_model_len: int = 1 << 30
    enable_chunked_prefill: bool = True
    enable_prefix_caching: bool = True
    prefill_first: bool = False
    """vLLM V0's default: passes of whole prompts only, decodes only when no prompt is admitted."""
    watermark_blocks: int = 0
    """Blocks V0 keeps free when admitting a prompt (1 % of the pool)."""
    max_num_queued_reqs: int = 0
    """``--max-num-queued-reqs``: requests in flight (waiting + running) beyond which the API
    server answers 503 (vLLM PR #49445, 2026-07; 0: off, the default)."""


def _blocks(tokens: int, block_size: int) -> int:
    return -(-tokens // block_size)


class PagedScheduler(Scheduler):
    """vLLM's V1 (or V0) scheduler over a :class:`BlockPool`."""

    def __init__(self, policy: PagedPolicy) -> None:
        super().__init__(policy.block_size)
        self.policy = policy
        self.pool = BlockPool(policy.num_blocks, policy.enable_prefix_caching)
        self.running: dict[int, Request] = {}  # insertion order = admission order
        self.prefilling: dict[int, Request] = {}  # the running requests still reading their prompt
        self.num_preemptions = 0
        self._preempted_now = False

    def add(self, request: Request, now: float) -> None:
        if request.prompt_tokens + request.output_tokens > self.policy.max_model_len:
            self.end(request, now, Status.CANCELLED)  # HTTP 400: exceeds max_model_len
            return
        cap = self.policy.max_num_queued_reqs
        if cap and self.num_waiting + len(self.running) >= cap:
            self.end(request, now, Status.REJECTED)  # HTTP 503: too many requests in flight
            return
        super().add(request, now)

    # the decision ---------------------------------------------------------------------------
    def schedule(self, now: float) -> Step | None:
        decode = self.decode
        if self.continue_decoding():  # the usual pass: the decode set alone, nobody to admit
            return Step([], True, decode.num_seqs, decode.context_tokens)
        if self.policy.prefill_first:
            step = self._schedule_prefill_pass(now)
            if step is not None:
                return step
            chunks: list[tuple[Request, int]] = []
            self._schedule_running(chunks, budget=1 << 62)
        else:
            chunks = []
            budget = self._schedule_running(chunks, self.policy.max_num_batched_tokens)
            if not self._preempted_now:
                self._schedule_waiting(chunks, budget, now)
        if not chunks and decode.num_seqs == 0:
            return None
        return Step(chunks, True, decode.num_seqs, decode.context_tokens)

    def _prompt_need(self, request: Request, chunk: int) -> int:
        return _blocks(request.computed + chunk, self.policy.block_size) - request.blocks

    def _schedule_running(self, chunks: list[tuple[Request, int]], budget: int) -> int:
        """Serve running requests first; returns the budget left. Preempts when blocks run out."""
        decode = self.decode
        budget -= decode.num_seqs
        plan = []
        need = decode.new_blocks(1)
        for request in self.prefilling.values():  # at most one in practice: the last admitted
            chunk = min(request.prefill_target - request.computed, budget)
            if chunk <= 0:
                break
            plan.append((request, chunk))
            budget -= chunk
            need += self._prompt_need(request, chunk)
        if need <= self.pool.num_free:
            self.pool.allocate(need)
            for request, chunk in plan:
                request.blocks += self._prompt_need(request, chunk)
            chunks.extend(plan)
            return budget
        return self._schedule_running_slow(chunks)

    def _schedule_running_slow(self, chunks: list[tuple[Request, int]]) -> int:
        """Walk the running list in admission order, preempting from its tail (vLLM V1)."""
        decode, pool, bs = self.decode, self.pool, self.policy.block_size
        budget = self.policy.max_num_batched_tokens
        for request in list(self.running.values()):
            if request.id not in self.running:
                break  # preempted as a tail victim: everything after it is gone too
            if request.phase == Phase.DECODE:
                chunk, need = 1, int(decode.stored_tokens(request) % bs == 0)
            else:
                chunk = min(request.prefill_target - request.computed, budget)
                if chunk <= 0:
                    break
                need = self._prompt_need(request, chunk)
            while need > pool.num_free:
                victim = next(reversed(self.running.values()))
                self._preempt(victim)
                if victim is request:
                    return 0
            pool.allocate(need)
            budget -= chunk
            if request.phase == Phase.PREFILL:
                request.blocks += need
                chunks.append((request, chunk))
        return budget

    def _preempt(self, request: Request) -> None:
        if request.phase == Phase.DECODE:  # its last token came with the decode set's last pass
            request.last_token_s = max(request.last_token_s, self.last_decode_end)
        self._release(request)
        request.phase = Phase.QUEUED
        request.computed = 0
        request.num_preemptions += 1
        self.num_preemptions += 1
        self._preempted_now = True
        self.waiting.appendleft(request)
        self.num_waiting += 1

    def _schedule_waiting(self, chunks: list[tuple[Request, int]], budget: int, now: float) -> None:
        """Admit from the head of the waiting queue while seats, budget and blocks last."""
        p = self.policy
        while budget > 0 and len(self.running) < p.max_num_seqs:
            request = self.pop_waiting()
            if request is None:
                return
            if request.computed == 0:
                self._lookup_prefix(request)
            want = request.prefill_target - request.computed
            chunk = min(want, budget)
            if chunk < want and not p.enable_chunked_prefill:
                return
            need = self._prompt_need(request, chunk)
            if need + p.watermark_blocks > self.pool.num_free:
                return  # head-of-line: the first waiting request that does not fit stops admission
            self.pool.allocate(need)
            request.blocks += need
            self.waiting.popleft()
            self.num_waiting -= 1
            request.phase = Phase.PREFILL
            if request.started_s < 0:
                request.started_s = now
            self.running[request.id] = request
            self.prefilling[request.id] = request
            chunks.append((request, chunk))
            budget -= chunk

    def _schedule_prefill_pass(self, now: float) -> Step | None:
        """vLLM V0: admit as many whole prompts as fit into a prompt-only pass."""
        p = self.policy
        budget = max(p.max_num_batched_tokens, 1)
        chunks: list[tuple[Request, int]] = []
        self._schedule_waiting(chunks, budget, now)
        return Step(chunks, False, 0, 0) if chunks else None

    # prefix caching ---------------------------------------------------------------------------
    def _prefix_keys(self, request: Request, num_blocks: int) -> list[Hashable]:
        """Engine-block keys derived from the request's prefix hashes (full blocks only)."""
        hb, bs = request.hash_block_tokens, self.policy.block_size
        if not request.block_hashes or hb <= 0:
            return []
        limit = min(num_blocks, len(request.block_hashes) * hb // bs)
        return [(request.block_hashes[i * bs // hb], i * bs % hb // bs) for i in range(limit)]

    def _lookup_prefix(self, request: Request) -> None:
        if not (self.policy.enable_prefix_caching and request.block_hashes):
            return
        keys = self._prefix_keys(request, (request.prefill_target - 1) // self.policy.block_size)
        hits = self.pool.lookup(keys)
        if hits:
            self.pool.acquire(keys[:hits])
            request.held_keys = list(keys[:hits])
            request.blocks = hits
            request.computed = hits * self.policy.block_size
            request.cached_tokens = max(request.cached_tokens, request.computed)

    def _register_prefix(self, request: Request, computed: int) -> None:
        """Cache the prompt's full blocks once they are computed."""
        full = min(computed, request.prompt_tokens) // self.policy.block_size
        held = request.held_keys if request.held_keys is not None else []
        keys = self._prefix_keys(request, full)
        for key in keys[len(held) :]:
            if not self.pool.register(key):
                break  # someone else cached it first: keep ours as a plain block
            held.append(key)
        request.held_keys = held

    # applying passes --------------------------------------------------------------------------
    def complete(self, step: Step, now: float) -> None:
        if self.policy.enable_prefix_caching:
            for request, chunk in step.chunks:  # cache full prompt blocks before anyone frees them
                if request.block_hashes and request.phase == Phase.PREFILL:
                    self._register_prefix(request, request.computed + chunk)
        super().complete(step, now)

    def advance(self, passes: int, now: float) -> None:
        if passes > 1:  # blocks of passes 2..K (the first took its own); safe_passes() saw them free
            assert self.pool.allocate(self.decode.new_blocks(passes, first=1))
        super().advance(passes, now)

    def continue_decoding(self) -> bool:
        self._preempted_now = False
        decode = self.decode
        if self.prefilling or self.num_waiting or not decode.num_seqs:
            return False
        need = decode.new_blocks(1)
        if need > self.pool.num_free:
            return False  # schedule() preempts
        self.pool.allocate(need)
        return True

    def _join(self, request: Request) -> None:
        del self.prefilling[request.id]
        self.decode.add(request)

    def _release(self, request: Request) -> None:
        if request.phase == Phase.DECODE:  # (blocks of the tokens stored, in closed form)
            held = -(-self.decode.stored_tokens(request) // self.policy.block_size)
        else:
            held = request.blocks
        keys = request.held_keys
        if keys:
            self.pool.release(keys)
            held -= len(keys)
        self.pool.free(held)
        request.held_keys = None
        request.blocks = 0
        self.running.pop(request.id, None)
        self.prefilling.pop(request.id, None)
        super()._release(request)

    def safe_passes(self) -> int:
        if self._preempted_now:  # admissions resume at the next pass: decide it afresh
            return 1
        passes = super().safe_passes()
        return self.decode.passes_within_blocks(self.pool.num_free, first=1, at_most=passes)

    def admits_arrivals(self) -> bool:
        return len(self.running) < self.policy.max_num_seqs and self.num_waiting == 0

    def has_work(self) -> bool:
        return bool(self.running) or super().has_work()
