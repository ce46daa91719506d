"""Slot servers: Ollama's runner (``single_queue``) and llama.cpp's ``llama-server`` (``serial_decode``).

Both put an unbounded FIFO queue in front of a fixed number of slots and run one iteration
loop that batches one decode token for every generating slot with prompt tokens of the slots
still reading their prompt (ENGINES.md A.1.4, A.2.3). They differ in the prompt budget, in
how the KV cache is laid out and in what happens when a context fills up:

=====================  ===========================================  ================================
                       Ollama (llamarunner / ollamarunner)          llama.cpp server
=====================  ===========================================  ================================
prompt budget          ``num_batch`` per sequence / shared          ``n_batch`` minus decode tokens
KV layout              ``num_ctx`` per slot (static)                ``n_ctx/np`` per slot or unified
prompt > slot context  truncated (keep the last tokens)             error (cancelled) [1]
context full           context shift (drop half)                    slot stops, ``truncated`` [1]
unified pool full      --                                           every active slot fails
=====================  ===========================================  ================================

[1] builds with ``--context-shift`` (older defaults) truncate and shift like Ollama.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

from sim.requests import Phase, Request, Status
from sim.servers.base import INF, Scheduler, Step

__all__ = ["BudgetMode", "SlotPolicy", "SlotScheduler"]

BudgetMode = Literal["batch", "per_seq", "shared"]


@dataclass(frozen=True)
class SlotPolicy:
    """Knobs of a slot server, resolved from an engine preset or a bare architecture spec."""

    num_slots: int
    slot_context_tokens: int
    """Context of one slot (the whole pool when ``unified``)."""
    prompt_budget: int
    """Prompt tokens one iteration may take (see ``budget_mode``)."""
    budget_mode: BudgetMode = "batch"
    """``batch``: ``prompt_budget`` shared with the decode tokens (llama.cpp ``n_batch``);
    ``per_seq``: up to ``prompt_budget`` for each prompting slot (Ollama llamarunner);
    ``shared``: ``prompt_budget`` shared by all slots, decode tokens included (Ollama ollamarunner)."""
    unified: bool = False
    """One KV pool of ``slot_context_tokens`` shared by all slots (llama.cpp ``--kv-unified``)."""
    context_shift: bool = False
    """Truncate long prompts and shift full contexts, rather than erroring/stopping."""
    keep_tokens: int = 4
    """Tokens kept at the start of the context when it is shifted or truncated (``num_keep``)."""
    max_queue: int = 1 << 62
    """Requests the scheduler holds while a model loads before answering 503 (Ollama)."""
    load_time_s: float = 0.0
    """Seconds to load the model (Ollama cold start)."""
    keep_alive_s: float = INF
    """Idle seconds after which the model is unloaded (Ollama ``keep_alive``)."""
    cold_start: bool = False
    """Whether the model still has to be loaded when the run starts."""


class SlotScheduler(Scheduler):
    """FIFO queue -> slots -> one batched iteration (decode tokens first, then prompt chunks)."""

    def __init__(self, policy: SlotPolicy) -> None:
        super().__init__()
        self.policy = policy
        self.free_slots: deque[int] = deque(range(policy.num_slots))
        self.prompting: list[Request] = []
        self.loaded_at = INF if policy.cold_start else 0.0
        self.idle_since = 0.0
        self.pool_used = 0  # unified KV: tokens held by prompting slots (decoders are implicit)
        self.slot_cache: list[tuple[tuple[int, ...], int]] = [((), 0)] * policy.num_slots
        """Per slot: prefix-block hashes and token count of what its KV still holds (prompt reuse)."""

    # model load / keep-alive (Ollama) -------------------------------------------------------
    def add(self, request: Request, now: float) -> None:
        self._check_loaded(now)
        if self.loaded_at > now and self.num_waiting >= self.policy.max_queue:
            self.end(request, now, Status.REJECTED)  # scheduler channel full during a load: 503
            return
        super().add(request, now)

    def _check_loaded(self, now: float) -> None:
        p = self.policy
        busy = self.decode.num_seqs or self.prompting or self.num_waiting
        if not busy and self.loaded_at <= now and now - self.idle_since >= p.keep_alive_s:
            self.loaded_at = INF  # unloaded after keep_alive
        if self.loaded_at == INF:
            self.loaded_at = now + p.load_time_s

    def wake_at(self) -> float:
        return self.loaded_at if self.num_waiting else INF

    # the decision ---------------------------------------------------------------------------
    def schedule(self, now: float) -> Step | None:
        if self.loaded_at > now:
            return None
        self._fill_slots(now)
        decode = self.decode
        chunks = self._prompt_chunks(decode.num_seqs)
        if self.policy.unified and not self._fits_pool(chunks, now):
            return self.schedule(now)
        if not chunks and decode.num_seqs == 0:
            self.idle_since = now
            return None
        return Step(chunks, True, decode.num_seqs, decode.context_tokens)

    def _fill_slots(self, now: float) -> None:
        while self.free_slots:
            request = self.pop_waiting()
            if request is None:
                return
            self.waiting.popleft()
            self.num_waiting -= 1
            if not self._fit_prompt(request, now):
                continue
            request.slot = self._choose_slot(request)
            self.pool_used += request.computed
            request.phase = Phase.PREFILL
            request.started_s = now
            self.prompting.append(request)
            self.prompting.sort(key=lambda r: r.slot)  # prompts are read in slot order

    def _choose_slot(self, request: Request) -> int:
        """The idle slot sharing the longest prompt prefix (reused), else the least recently used.

        llama.cpp ``cache_prompt`` / Ollama ``findLongestCacheSlot``: only the tokens after the
        common prefix are computed (at least one is, to sample from).
        """
        best, best_tokens = self.free_slots[0], 0
        if request.block_hashes:
            for slot in self.free_slots:
                hashes, held = self.slot_cache[slot]
                common = 0
                for a, b in zip(hashes, request.block_hashes, strict=False):
                    if a != b:
                        break
                    common += 1
                tokens = min(common * request.hash_block_tokens, held, request.prompt_tokens - 1)
                if tokens > best_tokens:
                    best, best_tokens = slot, tokens
        self.free_slots.remove(best)
        request.computed = best_tokens
        request.cached_tokens = best_tokens
        return best

    def _fit_prompt(self, request: Request, now: float) -> bool:
        """Truncate (context shift on) or refuse (off) a prompt longer than a slot."""
        limit = self.policy.slot_context_tokens
        if request.prompt_tokens < limit:
            return True
        if self.policy.context_shift:
            request.prompt_tokens = limit - 1
            return True
        self.end(request, now, Status.CANCELLED)
        return False

    def _prompt_chunks(self, num_decode: int) -> list[tuple[Request, int]]:
        p = self.policy
        # batch / shared: one budget that the decode tokens use first; per_seq: no common cap
        left = 1 << 62 if p.budget_mode == "per_seq" else p.prompt_budget - num_decode
        chunks = []
        for request in self.prompting:
            if left <= 0:
                break
            want = request.prefill_target - request.computed
            take = min(want, left, p.prompt_budget)
            chunks.append((request, take))
            left -= take
        return chunks

    # unified KV pool (llama.cpp --kv-unified) -------------------------------------------------
    def _pool_free(self) -> int:
        d = self.decode
        return self.policy.slot_context_tokens - self.pool_used - (d.context_tokens - d.num_seqs)

    def _fits_pool(self, chunks: list[tuple[Request, int]], now: float) -> bool:
        """Halve the prompt budget until the pass fits the pool; fail every slot if nothing fits."""
        free = self._pool_free() - self.decode.num_seqs
        need = sum(c for _, c in chunks)
        if free >= need:
            return True
        budget = max(c for _, c in chunks) if chunks else 0
        while free >= 0 and budget > 1:
            budget //= 2
            if sum(min(c, budget) for _, c in chunks) <= free:
                chunks[:] = [(r, min(c, budget)) for r, c in chunks]
                return True
        for request in [*self.prompting, *self.decode.members()]:  # "Context size has been exceeded"
            self.cancel(request, now, Status.CANCELLED)
        return False

    def safe_passes(self) -> int:
        passes = super().safe_passes()
        if self.policy.unified and self.decode.num_seqs:
            passes = min(passes, max(1, self._pool_free() // self.decode.num_seqs))
        return passes

    def admits_arrivals(self) -> bool:
        return bool(self.free_slots)

    def has_work(self) -> bool:
        return bool(self.prompting) or super().has_work()

    # applying passes ---------------------------------------------------------------------------
    def continue_decoding(self) -> bool:
        if self.prompting or self.num_waiting:
            return False
        # a unified pool too full for the next pass makes schedule() fail every slot
        return not self.policy.unified or self._pool_free() >= self.decode.num_seqs

    def complete(self, step: Step, now: float) -> None:
        self.pool_used += sum(chunk for _, chunk in step.chunks)
        super().complete(step, now)

    def _join(self, request: Request) -> None:
        self.prompting.remove(request)
        self.pool_used -= request.computed
        self.decode.add(request, self._limit_at(request.prompt_tokens + request.generated - self.decode.n))

    def _limit_at(self, key: int) -> int | None:
        """Pass count at which a member with this key would overflow its slot."""
        if self.policy.unified:
            return None
        return self.policy.slot_context_tokens - key + 1

    def _due(self, request: Request, now: float) -> None:
        decode = self.decode
        finish_at = request.output_tokens + request.prompt_tokens - request.discarded - request.key
        if decode.n >= finish_at or not self.policy.context_shift:
            super()._due(request, now)  # finished, or stopped as "truncated" at a full slot
            return
        p = self.policy
        discard = (p.slot_context_tokens - p.keep_tokens) // 2
        request.discarded += discard
        new_key = request.key - discard
        limit = self._limit_at(new_key)
        decode.rekey(request, new_key, finish_at if limit is None else min(finish_at, limit))

    def _release(self, request: Request) -> None:
        if request.phase == Phase.PREFILL:
            self.prompting.remove(request)
            self.pool_used -= request.computed
        if request.slot >= 0:
            held = self.decode.stored_tokens(request) if request.phase == Phase.DECODE else request.computed
            self.slot_cache[request.slot] = (request.block_hashes, held)
            self.free_slots.append(request.slot)
            request.slot = -1
        super()._release(request)
