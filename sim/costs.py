"""Step-cost models: seconds for one forward pass, and closed-form sums over decode runs.

A pass is described by a :class:`~sim.shapes.BatchShape`. Every cost model also describes a
*pure decode* pass with ``D`` sequences attending ``C`` context tokens as

    t(C) = c0 + max(a1 + b1*C, a2 + b2*C)             (a :class:`DecodeLine`)

(for the per-kernel roofline, ``c0`` holds the overheads and the GEMMs, which do not depend on
``C``, and the two lines are the attention's KV traffic and its arithmetic; for the whole-pass
roofline, the two lines are all memory traffic and all arithmetic)

so that the iteration loop can sum a run of ``K`` decode passes, whose context grows by ``D``
each pass, in closed form (the step time grows with the context, so the sum is not a product),
and invert that sum to find the pass during which a future arrival lands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

from sim.shapes import BatchShape

__all__ = [
    "ConstantStepCost",
    "DecodeLine",
    "LinearStepCost",
    "RooflineStepCost",
    "StepCost",
]


@dataclass(frozen=True, slots=True)
class DecodeLine:
    """Time of a pure decode pass as a function of its context: c0 + max(a1 + b1 C, a2 + b2 C)."""

    c0: float
    a1: float
    b1: float
    a2: float
    b2: float
    one: bool = field(init=False, repr=False, compare=False)
    """Line 1 dominates at every context (a1 >= a2 and b1 >= b2): the common case, summed
    without splitting the run (the arithmetic is the general path's, so the result is the same)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "one", self.a1 >= self.a2 and self.b1 >= self.b2)

    def at(self, context_tokens: float) -> float:
        """Seconds of one pass whose decoding sequences attend ``context_tokens`` in total."""
        if self.one:
            return self.c0 + (self.a1 + self.b1 * context_tokens)
        return self.c0 + max(self.a1 + self.b1 * context_tokens, self.a2 + self.b2 * context_tokens)

    def run_time(self, context_tokens: int, num_seqs: int, num_passes: int) -> float:
        """Sum of ``num_passes`` consecutive passes; the context grows by ``num_seqs`` per pass."""
        if self.one:
            p, q = self.a1 + self.b1 * context_tokens, self.b1 * num_seqs
            return num_passes * p + q * (num_passes - 1) * num_passes / 2 + self.c0 * num_passes
        total = 0.0
        for start, stop, p, q in self._segments(context_tokens, num_seqs, num_passes):
            n = stop - start
            total += n * p + q * (start + stop - 1) * n / 2
        return total + self.c0 * num_passes

    def run_until(
        self, context_tokens: int, num_seqs: int, max_passes: int, duration_s: float
    ) -> tuple[int, float]:
        """(K, seconds) of the run of passes that stops at the first pass boundary at or after
        ``duration_s`` (K >= 1), or after ``max_passes`` passes if that comes first."""
        total = self.run_time(context_tokens, num_seqs, max_passes)
        if total < duration_s:
            return max_passes, total
        passes, seconds = self.passes_to_reach(context_tokens, num_seqs, duration_s)
        return (passes, seconds) if passes <= max_passes else (max_passes, total)

    def passes_to_reach(
        self, context_tokens: int, num_seqs: int, duration_s: float
    ) -> tuple[int, float]:
        """Smallest K >= 1 whose run of K passes lasts at least ``duration_s``, and its time."""
        if duration_s <= 0:
            return 1, self.run_time(context_tokens, num_seqs, 1)
        first = self.at(context_tokens)
        guess = max(1, math.ceil(duration_s / first))
        slope = max(self.b1, self.b2) * num_seqs
        if slope > 0:  # solve K p + q K(K-1)/2 = d for the steeper line, then correct
            p = first + slope / 2
            disc = p * p + 2 * slope * duration_s
            guess = max(1, min(guess, math.ceil((math.sqrt(disc) - p) / slope) + 1))
        k = guess
        while k > 1 and self.run_time(context_tokens, num_seqs, k - 1) >= duration_s:
            k -= 1
        while (total := self.run_time(context_tokens, num_seqs, k)) < duration_s:
            k += 1
        return k, total

    def _segments(
        self, context_tokens: int, num_seqs: int, num_passes: int
    ) -> list[tuple[int, int, float, float]]:
        """Split passes [0, K) where the dominant line changes; each piece is p + q j."""
        p1, q1 = self.a1 + self.b1 * context_tokens, self.b1 * num_seqs
        if self.one:
            return [(0, num_passes, p1, q1)]
        p2, q2 = self.a2 + self.b2 * context_tokens, self.b2 * num_seqs
        first_is_1 = p1 >= p2
        lead, other = ((p1, q1), (p2, q2)) if first_is_1 else ((p2, q2), (p1, q1))
        if other[1] <= lead[1]:
            return [(0, num_passes, *lead)]
        cross = (lead[0] - other[0]) / (other[1] - lead[1])  # other overtakes after j > cross
        switch = min(num_passes, max(0, math.floor(cross) + 1))
        pieces = []
        if switch > 0:
            pieces.append((0, switch, *lead))
        if switch < num_passes:
            pieces.append((switch, num_passes, *other))
        return pieces


class StepCost(Protocol):
    """Prices one forward pass."""

    def step_time(self, shape: BatchShape) -> float:
        """Seconds for one pass of this shape."""
        ...

    def decode_line(self, num_seqs: int) -> DecodeLine:
        """The pure-decode pass time of ``num_seqs`` sequences, as a function of context."""
        ...


@dataclass(frozen=True)
class ConstantStepCost:
    """Every pass costs ``step_s``, whatever it holds (used for exact timelines)."""

    step_s: float

    def step_time(self, shape: BatchShape) -> float:
        return self.step_s

    def decode_line(self, num_seqs: int) -> DecodeLine:
        return DecodeLine(self.step_s, 0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class LinearStepCost:
    """t = overhead + per prompt (or verified draft) token + per decoding sequence + per attended
    context token."""

    overhead_s: float = 0.0
    prefill_s_per_token: float = 0.0
    decode_s_per_seq: float = 0.0
    attention_s_per_context_token: float = 0.0

    def step_time(self, shape: BatchShape) -> float:
        return (
            self.overhead_s
            + self.prefill_s_per_token * (shape.num_prefill_tokens + shape.num_spec_tokens)
            + self.decode_s_per_seq * shape.num_decode_seqs
            + self.attention_s_per_context_token * shape.num_context_tokens
        )

    def decode_line(self, num_seqs: int) -> DecodeLine:
        c0 = self.overhead_s + self.decode_s_per_seq * num_seqs
        b = self.attention_s_per_context_token
        return DecodeLine(c0, 0.0, b, 0.0, b)


@dataclass(frozen=True)
class RooflineStepCost:
    """Roofline pass time from model shape x hardware x weight format x engine efficiencies.

    Four times make a pass:

    * GEMM memory: weight bytes read once per physical pass (``ceil(tokens / max_pass_tokens)``
      passes, the ubatch of llama.cpp) at ``bandwidth_efficiency`` of peak bandwidth;
    * GEMM compute: 2 x layer weights x tokens + 2 x lm-head x sampled sequences (or x every
      prompt token with ``lm_head_on_every_prompt_token``) FLOPs at ``compute_efficiency`` of
      the format's tensor peak;
    * attention memory: KV bytes read by attention and written for the new tokens, at
      ``bandwidth_efficiency``;
    * attention compute: 4 x layers x heads x head_dim FLOPs per query-key pair at
      ``attention_efficiency`` of the 16-bit peak.

    With ``per_kernel`` (GPUs), ``t = overheads + max(GEMM memory, GEMM compute) + max(attention
    memory, attention compute)``: the weight GEMMs and the attention kernels run one after the
    other, each bound by its own roofline. Without it (CPUs), ``t = overheads + max(memory,
    compute)`` over the whole pass. On the H100/H200 measurements the whole-pass form
    under-priced the mixed passes of chunked prefill (compute-bound GEMMs beside KV-bound decode
    attention) by up to 34 % and fitted Llama-2-7B with 1.06 of the datasheet bandwidth; per
    kernel, every GPU group fits better with physical parameters. On the CPU measurements the
    per-kernel form fits no better and drives bandwidth to its bound (``docs/calibration.md``).
    ``overheads = step_overhead * passes + seq_overhead * seqs``.
    """

    weight_bytes_per_pass: float
    kv_bytes_per_token: float
    layer_matmul_params: float
    lm_head_params: float
    attention_flops_per_pair: float
    bandwidth_bytes_per_s: float
    gemm_flops_per_s: float
    attention_flops_per_s: float
    step_overhead_s: float
    seq_overhead_s: float
    max_pass_tokens: int = 1 << 30
    lm_head_on_every_prompt_token: bool = False
    """The LM head runs on every prompt token, not only on the last one of each prompt (logits
    for all positions: llama-cpp-python's server, whose ``logits_all`` defaults to True)."""
    per_kernel: bool = True
    """GEMMs and attention priced by separate rooflines and summed (GPUs); False: one roofline
    over the whole pass (CPUs)."""
    decode_scale: tuple[float, ...] = ()
    """Small-batch GEMM kernels (llama.cpp's matrix-vector and small-tile paths): a pass with no
    prompt tokens and ``n`` tokens has its GEMM times multiplied by ``decode_scale[n - 1]`` (the
    last entry beyond the table; none when empty). Fitted per batch size on batched-bench
    decode rows (``calibration/fit/``); passes that read a prompt run the large-batch kernels
    the roofline's efficiencies were fitted on."""

    def _scale(self, tokens: int) -> float:
        table = self.decode_scale
        if not table:
            return 1.0
        return table[tokens - 1] if tokens <= len(table) else table[-1]

    def step_time(self, shape: BatchShape) -> float:
        tokens = shape.num_tokens
        seqs = shape.num_decode_seqs + shape.num_prefill_seqs
        logits = seqs + shape.num_spec_tokens  # (a verified draft is sampled like any token)
        if self.lm_head_on_every_prompt_token:
            logits += shape.num_prefill_tokens - shape.num_prefill_seqs
        passes = max(1, -(-tokens // self.max_pass_tokens))
        kv_tokens = shape.num_context_tokens + shape.prefill_context_tokens + tokens
        pairs = shape.num_context_tokens + shape.prefill_attention_pairs + shape.spec_attention_pairs
        gemm_memory, gemm_compute = self._gemm_times(tokens, logits, passes)
        if self.decode_scale and shape.num_prefill_tokens == 0 and tokens > 0:
            scale = self._scale(tokens)
            gemm_memory, gemm_compute = gemm_memory * scale, gemm_compute * scale
        attention_memory = self.kv_bytes_per_token * kv_tokens / self.bandwidth_bytes_per_s
        attention_compute = self.attention_flops_per_pair * pairs / self.attention_flops_per_s
        if self.per_kernel:
            busy = max(gemm_memory, gemm_compute) + max(attention_memory, attention_compute)
        else:
            busy = max(gemm_memory + attention_memory, gemm_compute + attention_compute)
        return self.step_overhead_s * passes + self.seq_overhead_s * seqs + busy

    def _gemm_times(self, tokens: int, logits: int, passes: int) -> tuple[float, float]:
        """(memory, compute) seconds of the weight GEMMs: weights read once per physical pass;
        2 FLOPs per weight per token, and per LM-head weight per sampled position."""
        memory = self.weight_bytes_per_pass * passes / self.bandwidth_bytes_per_s
        compute = 2.0 * (self.layer_matmul_params * tokens + self.lm_head_params * logits) / self.gemm_flops_per_s
        return memory, compute

    def decode_line(self, num_seqs: int) -> DecodeLine:
        passes = max(1, -(-num_seqs // self.max_pass_tokens))
        bw = self.bandwidth_bytes_per_s
        c0 = self.step_overhead_s * passes + self.seq_overhead_s * num_seqs
        gemm_memory, gemm_compute = self._gemm_times(num_seqs, num_seqs, passes)
        if self.decode_scale and num_seqs > 0:
            scale = self._scale(num_seqs)
            gemm_memory, gemm_compute = gemm_memory * scale, gemm_compute * scale
        # attention against the context C: memory a + b1 C (the new tokens' KV is written too),
        # compute b2 C
        a = self.kv_bytes_per_token * num_seqs / bw
        b1 = self.kv_bytes_per_token / bw
        b2 = self.attention_flops_per_pair / self.attention_flops_per_s
        if self.per_kernel:
            return DecodeLine(c0 + max(gemm_memory, gemm_compute), a, b1, 0.0, b2)
        return DecodeLine(c0, gemm_memory + a, b1, gemm_compute, b2)
