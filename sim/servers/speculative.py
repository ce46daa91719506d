"""Speculative decoding: drafts verified in one pass, tokens per step from the acceptance process.

Each decoding sequence proposes ``k_b`` draft tokens per step; the target verifies them in the
same forward pass as every other token (``k_b + 1`` tokens for that sequence: its sampled token
and the drafts) and keeps the accepted prefix plus one token of its own, so the sequence gains
``A + 1`` tokens, ``A`` in ``[0, k_b]``. ``A`` is drawn from per-position acceptance rates with a
random stream seeded from the scenario's seed (same seed, same results).

Tokens per step are random, so a speculating server takes the one-pass-at-a-time path: its
scheduler never asks the loop to fast-forward. Members of the decode set still gain their one
token per pass implicitly; the ``A`` extra tokens are added by re-keying the member
(:meth:`~sim.servers.decode_set.DecodeSet.rekey`), which keeps the set's context sum, KV
residues and finish events exact.

Engine accounting (``SPECULATIVE_AND_FRONTEND.md`` A.1, A.2, copied into ``docs/speculative.md``):

* vLLM V1 (:class:`SpeculativePagedScheduler`): every decoding request asks for ``1 + k`` tokens
  of ``max_num_batched_tokens`` (drafts cut, in admission order, when the budget is short; never
  the sampled token) and of ``max_model_len``; KV blocks are allocated for the ``1 + k``
  verified tokens plus ``k`` lookahead slots (EAGLE, draft model; none for n-gram) and are not
  freed when drafts are rejected; prompt chunks get what is left of the budget.
* llama.cpp (:class:`SpeculativeSlotScheduler`): each generating slot drafts
  ``min(draft_max, tokens left - 1, room in its context)`` tokens; a draft shorter than
  ``draft_min`` is dropped (plain decoding for that slot); the drafts join the shared batch
  before any prompt chunk, inside ``n_batch``.

The draft's own cost is priced by :class:`DraftedStepCost`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from sim.costs import DecodeLine, StepCost
from sim.requests import Phase, Request
from sim.servers.base import DraftPass, Step
from sim.servers.decode_set import DecodeSet
from sim.servers.paged import PagedPolicy, PagedScheduler
from sim.servers.slots import SlotPolicy, SlotScheduler
from sim.shapes import BatchShape

__all__ = [
    "Acceptance",
    "DraftedStepCost",
    "SpecPolicy",
    "SpeculativePagedScheduler",
    "SpeculativeSlotScheduler",
    "mean_tokens_per_step",
]


@dataclass(frozen=True)
class SpecPolicy:
    """How a server speculates: draft length, acceptance process, KV accounting."""

    num_tokens: int
    """Draft tokens per sequence per step, ``k`` (vLLM ``num_speculative_tokens``, llama.cpp
    ``--draft-max``)."""
    accept_at_least: tuple[float, ...]
    """``P(A >= i)`` for ``i = 1 .. k``: the probability that the first ``i`` drafts are all
    accepted (vLLM's per-position acceptance metric); non-increasing."""
    draft_probability: float = 1.0
    """Chance that a step proposes a draft at all (n-gram: the prompt-lookup match rate)."""
    lookahead: int = 0
    """KV slots reserved beyond the verified tokens (vLLM: ``k`` for EAGLE and draft models)."""
    min_tokens: int = 0
    """Drafts shorter than this are dropped (llama.cpp ``--draft-min``)."""
    tokens_by_batch: tuple[tuple[int, int, int], ...] = ()
    """vLLM's ``num_speculative_tokens_per_batch_size``: ``(first, last, k)`` rows, the draft
    length while ``first <= running requests <= last``; ``num_tokens`` outside every row."""

    def tokens_at(self, batch: int) -> int:
        """Draft tokens per sequence at this batch size."""
        for first, last, k in self.tokens_by_batch:
            if first <= batch <= last:
                return k
        return self.num_tokens


def mean_tokens_per_step(accept_at_least: tuple[float, ...] | list[float]) -> float:
    """``E[A + 1] = 1 + sum_i P(A >= i)``; for i.i.d. acceptance ``a`` this is
    ``(1 - a^(k+1)) / (1 - a)``."""
    return 1.0 + sum(accept_at_least)


class Acceptance:
    """Draws how many drafts the target accepts, and counts them as vLLM's metrics do."""

    def __init__(self, policy: SpecPolicy, seed: int) -> None:
        self.rng = random.Random(seed)
        self.survival = list(policy.accept_at_least)
        self.draft_probability = policy.draft_probability
        self.num_drafts = 0
        """Steps that proposed at least one draft token (``vllm:spec_decode_num_drafts``)."""
        self.num_draft_tokens = 0
        self.num_accepted_tokens = 0
        self.accepted_per_position = [0] * len(self.survival)

    def proposes(self) -> bool:
        """Whether this step has a draft (always, unless the method only sometimes finds one)."""
        return self.draft_probability >= 1.0 or self.rng.random() < self.draft_probability

    def accept(self, drafted: int) -> int:
        """Accepted drafts out of ``drafted``: one uniform against the survival curve."""
        u = self.rng.random()
        survival = self.survival
        accepted = 0
        while accepted < drafted and u < survival[accepted]:
            self.accepted_per_position[accepted] += 1
            accepted += 1
        self.num_drafts += 1
        self.num_draft_tokens += drafted
        self.num_accepted_tokens += accepted
        return accepted

    @property
    def acceptance_length(self) -> float:
        """vLLM's mean acceptance length, ``1 + accepted / drafts`` (1.0 before any draft)."""
        return 1.0 + self.num_accepted_tokens / self.num_drafts if self.num_drafts else 1.0


def _draft_pass(decode: DecodeSet, members: list[tuple[Request, int]], depth: int) -> DraftPass:
    """Aggregate what the drafts add to a pass: verified tokens, their attention, the drafters."""
    tokens = seqs = context = 0
    pairs = 0.0
    n = decode.n
    for request, k in members:
        if k:
            c = request.key + n  # context of the sequence's sampled token
            tokens += k
            seqs += 1
            context += c
            pairs += k * c + k * (k + 1) / 2
    return DraftPass(members, tokens, pairs, seqs, depth, context)


def _apply(decode: DecodeSet, members: list[tuple[Request, int]], acceptance: Acceptance, slot_tokens: int) -> None:
    """Before the pass counter moves: give each drafting member its accepted tokens.

    The pass gives every member one token implicitly; a member that accepted ``A`` drafts
    emits ``min(A + 1, left)`` tokens, so its key grows by the extra ones and its finish (or
    slot-full) event moves closer. ``slot_tokens`` > 0 is the context of a llama.cpp slot.
    """
    n = decode.n
    for request, k in members:
        if not k:
            continue
        accepted = acceptance.accept(k)
        left = request.output_tokens - decode.generated(request)
        extra = min(left - 1, accepted)
        if extra > 0:
            key = request.key + extra
            event = n + left - extra
            if slot_tokens > 0:
                limit = slot_tokens - key + 1
                event = min(event, limit)
            decode.rekey(request, key, event)


def _blocks(tokens: int, block_size: int) -> int:
    return -(-tokens // block_size)


class SpeculativePagedScheduler(PagedScheduler):
    """vLLM V1 with a ``speculative_config``: budget, KV and acceptance per step."""

    def __init__(self, policy: PagedPolicy, spec: SpecPolicy, seed: int) -> None:
        super().__init__(policy)
        self.spec = spec
        self.acceptance = Acceptance(spec, seed)

    def continue_decoding(self) -> bool:
        self._preempted_now = False
        return False  # every pass is decided (and priced) afresh

    def safe_passes(self) -> int:
        return 1

    def schedule(self, now: float) -> Step | None:
        self._preempted_now = False
        chunks: list[tuple[Request, int]] = []
        members: list[tuple[Request, int]] = []
        k = self.spec.tokens_at(len(self.running)) if self.spec.tokens_by_batch else self.spec.num_tokens
        budget = self._schedule_running_spec(chunks, members, k)
        if not self._preempted_now:
            self._schedule_waiting(chunks, budget, now)
        decode = self.decode
        if not chunks and decode.num_seqs == 0:
            return None
        drafts = _draft_pass(decode, members, k) if self.spec.num_tokens else None
        return Step(chunks, True, decode.num_seqs, decode.context_tokens, drafts)

    def _schedule_running_spec(
        self, chunks: list[tuple[Request, int]], members: list[tuple[Request, int]], num_tokens: int
    ) -> int:
        """vLLM's running loop: each decode takes ``1 + k`` tokens and its blocks (with lookahead);
        preempts from the tail of the running list when blocks run out."""
        decode, pool, p, spec = self.decode, self.pool, self.policy, self.spec
        bs = p.block_size
        budget = p.max_num_batched_tokens
        spare = budget - decode.num_seqs  # tokens left for drafts once every decode has its own
        for request in list(self.running.values()):
            if request.id not in self.running:
                break  # preempted as a tail victim: everything after it is gone too
            if request.phase == Phase.DECODE:
                stored = decode.stored_tokens(request)
                k = 0
                if num_tokens and spare > 0 and self.acceptance.proposes():
                    k = min(num_tokens, spare, p.max_model_len - 2 - stored)
                    k = max(0, k)
                chunk = 1 + k
                need = _blocks(stored + chunk + spec.lookahead, bs) - request.blocks
            else:
                chunk = min(request.prefill_target - request.computed, budget)
                if chunk <= 0:
                    break
                k = 0
                need = self._prompt_need(request, chunk)
            need = max(0, need)
            while need > pool.num_free:
                victim = next(reversed(self.running.values()))
                self._preempt(victim)
                if victim is request:
                    return 0
            pool.allocate(need)
            request.blocks += need
            budget -= chunk
            if request.phase == Phase.DECODE:
                spare -= k
                members.append((request, k))
            else:
                chunks.append((request, chunk))
        return budget

    def complete(self, step: Step, now: float) -> None:
        if step.drafts is not None:
            _apply(self.decode, step.drafts.members, self.acceptance, 0)
        super().complete(step, now)

    def _release(self, request: Request) -> None:
        if request.phase == Phase.DECODE:  # blocks beyond the stored tokens: lookahead, rejected drafts
            extra = request.blocks - _blocks(self.decode.stored_tokens(request), self.policy.block_size)
            if extra > 0:
                self.pool.free(extra)
        super()._release(request)


class SpeculativeSlotScheduler(SlotScheduler):
    """llama.cpp ``llama-server`` with ``--model-draft``: per-slot drafts in the shared batch."""

    def __init__(self, policy: SlotPolicy, spec: SpecPolicy, seed: int) -> None:
        super().__init__(policy)
        self.spec = spec
        self.acceptance = Acceptance(spec, seed)

    def continue_decoding(self) -> bool:
        return False

    def safe_passes(self) -> int:
        return 1

    def schedule(self, now: float) -> Step | None:
        if self.loaded_at > now:
            return None
        self._fill_slots(now)
        decode = self.decode
        members = self._plan_drafts()
        drafted = 0
        for _, k in members:
            drafted += k
        chunks = self._prompt_chunks(decode.num_seqs + drafted)
        if self.policy.unified:
            self.pool_used += drafted  # the drafts' KV cells are taken before any prompt chunk
            fits = self._fits_pool(chunks, now)
            self.pool_used -= drafted
            if not fits:
                return self.schedule(now)
        if not chunks and decode.num_seqs == 0:
            self.idle_since = now
            return None
        drafts = _draft_pass(decode, members, self.spec.num_tokens) if self.spec.num_tokens else None
        return Step(chunks, True, decode.num_seqs, decode.context_tokens, drafts)

    def _plan_drafts(self) -> list[tuple[Request, int]]:
        """Draft length of every generating slot, in slot order (llama.cpp's rules)."""
        decode, p, spec = self.decode, self.policy, self.spec
        if not decode.num_seqs or not spec.num_tokens:
            return []
        members = sorted(decode.members(), key=lambda r: r.slot)
        spare = p.prompt_budget - decode.num_seqs if p.budget_mode == "batch" else 1 << 62
        pool_spare = self._pool_free() - decode.num_seqs if p.unified else 1 << 62
        out: list[tuple[Request, int]] = []
        for request in members:
            stored = decode.stored_tokens(request)
            k = min(spec.num_tokens, request.output_tokens - decode.generated(request) - 1, spare, pool_spare)
            if not p.unified:
                k = min(k, p.slot_context_tokens - stored - 1)
            if k < spec.min_tokens or k <= 0 or not self.acceptance.proposes():
                k = 0
            spare -= k
            pool_spare -= k
            out.append((request, k))
        return out

    def complete(self, step: Step, now: float) -> None:
        if step.drafts is not None:
            slot = 0 if self.policy.unified else self.policy.slot_context_tokens
            _apply(self.decode, step.drafts.members, self.acceptance, slot)
        super().complete(step, now)


@dataclass(frozen=True)
class DraftedStepCost:
    """A target's pass cost plus its drafter's, priced on the same hardware by the same model.

    ``drafter`` None is free drafting (n-gram prompt lookup, a CPU string match). Otherwise:

    * batched drafting (vLLM): one drafter pass over the step's tokens (prompt chunks
      included, which is why EAGLE raises TTFT), then ``k - 1`` sequential single-token passes
      over the drafting sequences (``llm_base_proposer.py``);
    * per-sequence drafting (llama.cpp): the drafter reads the step's prompt chunks, then each
      slot drafts its tokens one single-sequence pass at a time (one draft context per slot).
    """

    target: StepCost
    drafter: StepCost | None
    per_sequence: bool = False
    step_overhead_s: float = 0.0
    """Fixed seconds a speculative step adds beside the drafter's passes (rejection sampling,
    the proposer's bookkeeping)."""

    def step_time(self, shape: BatchShape) -> float:
        t = self.target.step_time(shape)
        if self.drafter is None or shape.draft_depth == 0:
            return t
        return t + self.step_overhead_s + self.draft_time(shape)

    def draft_time(self, shape: BatchShape) -> float:
        """Seconds the drafter adds to a pass of this shape."""
        drafter = self.drafter
        if drafter is None:
            return 0.0
        seqs = shape.num_drafting_seqs
        if self.per_sequence:
            t = 0.0
            if shape.num_prefill_tokens:
                t += drafter.step_time(BatchShape(
                    shape.num_prefill_tokens, shape.num_prefill_seqs, shape.prefill_context_tokens,
                    shape.prefill_attention_pairs))
            if seqs:
                one = drafter.step_time(BatchShape(num_decode_seqs=1, num_context_tokens=shape.drafting_context_tokens // seqs))
                t += shape.num_spec_tokens * one
            return t
        # the step's tokens, the verified drafts read like prompt tokens (one sampled position each)
        first = BatchShape(
            shape.num_prefill_tokens + shape.num_spec_tokens,
            shape.num_prefill_seqs,
            shape.prefill_context_tokens,
            shape.prefill_attention_pairs + shape.spec_attention_pairs,
            shape.num_decode_seqs,
            shape.num_context_tokens,
        )
        t = drafter.step_time(first)
        if seqs and shape.draft_depth > 1:
            t += (shape.draft_depth - 1) * drafter.step_time(
                BatchShape(num_decode_seqs=seqs, num_context_tokens=shape.drafting_context_tokens))
        return t

    def decode_line(self, num_seqs: int) -> DecodeLine:
        return self.target.decode_line(num_seqs)
