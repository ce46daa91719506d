"""Step cost of one engine spread over several GPUs: tensor, pipeline, data and expert parallelism
and mixture-of-experts layers, priced in closed form from one GPU's roofline.

A :class:`ParallelStepCost` wraps the :class:`~sim.costs.RooflineStepCost` of *one GPU of the
heaviest pipeline stage* (its weights, KV and attention already divided by the tensor-parallel
degree; for an MoE model the routed experts left out) and adds, per pass:

* the routed experts as their own kernel: ``max(bytes, FLOPs)`` with the bytes of the expected
  number of distinct experts the pass's tokens touch, D(B) = E (1 - (1 - k/E)^B), and a fixed
  time per MoE layer (the fused-MoE kernel's launch and routing, fitted on vLLM's kernel table);
* the collectives: two all-reduces per layer of ``tokens x hidden x 2`` bytes over the TP group
  (plus one for the embedding), priced ``alpha + 2(n-1)/n x bytes / bus bandwidth``; MoE
  dispatch/combine across DP ranks as all-gather + reduce-scatter;
* pipeline parallelism: the running sequences are split into ``m = min(PP, seqs)`` micro-batches
  in flight (vLLM V1 keeps PP batches of disjoint requests), and each sequence advances one token
  per ``PP`` stage slots: one engine step costs ``PP x (stage time of one micro-batch + send)``;
* data parallelism: the DP ranks step together (MoE layers synchronise them); the batch is
  shared evenly between them, so a step costs what one rank's share costs.

With TP = PP = DP = 1 and a dense model the engines do not wrap the cost at all: results are
those of one device, bit for bit. The price of a step is computed, never simulated per GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sim.costs import DecodeLine, RooflineStepCost
from sim.parallel import expected_distinct_experts
from sim.shapes import BatchShape

__all__ = ["AllReduce", "MoeLayers", "ParallelStepCost"]


@dataclass(frozen=True, slots=True)
class AllReduce:
    """Fitted collectives of one group of ``n`` GPUs.

    NCCL: ``alpha + 2(n-1)/n S / busbw``; vLLM's custom all-reduce, when allowed, for
    ``S < custom_max_bytes`` with its own (alpha, busbw). All-gather / reduce-scatter:
    ``alpha + (n-1)/n S / busbw``. n = 1 costs nothing.
    """

    n: int = 1
    nccl_alpha_s: float = 0.0
    nccl_busbw: float = math.inf
    custom_alpha_s: float = 0.0
    custom_busbw: float = math.inf
    custom_max_bytes: float = 0.0
    """0 when vLLM's custom all-reduce is off (not P2P, not fully NVLink-connected, disabled)."""

    def allreduce(self, nbytes: float) -> float:
        """Seconds of one all-reduce of ``nbytes`` per rank."""
        if self.n <= 1 or nbytes <= 0:
            return 0.0
        factor = 2.0 * (self.n - 1) / self.n
        if nbytes < self.custom_max_bytes:
            return self.custom_alpha_s + factor * nbytes / self.custom_busbw
        return self.nccl_alpha_s + factor * nbytes / self.nccl_busbw

    def gather(self, nbytes: float) -> float:
        """Seconds of one all-gather (or reduce-scatter) whose full result is ``nbytes``."""
        if self.n <= 1 or nbytes <= 0:
            return 0.0
        return self.nccl_alpha_s + (self.n - 1) / self.n * nbytes / self.nccl_busbw


@dataclass(frozen=True, slots=True)
class MoeLayers:
    """Routed experts of the MoE layers one GPU runs (shared experts are in the dense part)."""

    layers: int
    """MoE layers on this GPU's pipeline stage."""
    num_experts: int
    top_k: int
    expert_bytes: float
    """Bytes of one expert as held by one GPU (divided by the expert-TP degree without EP)."""
    expert_flops_per_token: float
    """FLOPs of one token through one expert on one GPU (2 x 3 x hidden x inter / expert TP)."""
    bandwidth_bytes_per_s: float
    flops_per_s: float
    layer_overhead_s: float = 0.0
    """Fixed seconds per MoE layer (routing, fused-MoE launch), fitted on vLLM's kernel table."""
    ep_ranks: int = 1
    """Ranks the experts are divided between (EP); 1 without expert parallelism."""
    max_rank_load: float = 1.0
    """Hottest rank's token load over the mean (1 with uniform routing)."""
    skew: float = 0.0
    """Routing skew (Zipf exponent; 0 = uniform)."""

    def distinct(self, tokens: float) -> float:
        """Expected distinct experts the tokens touch (see :func:`sim.parallel.expected_distinct_experts`)."""
        return expected_distinct_experts(self.num_experts, self.top_k, tokens, self.skew)

    def time(self, tokens: float) -> float:
        """Seconds of the routed experts of all MoE layers for ``tokens`` tokens (all DP ranks')."""
        if tokens <= 0 or self.layers == 0:
            return 0.0
        experts = self.distinct(tokens) / self.ep_ranks
        memory = experts * self.expert_bytes / self.bandwidth_bytes_per_s
        slots = tokens * self.top_k * self.max_rank_load / self.ep_ranks
        compute = slots * self.expert_flops_per_token / self.flops_per_s
        return self.layers * (max(memory, compute) + self.layer_overhead_s)


@dataclass(frozen=True, slots=True)
class ParallelStepCost:
    """One engine over ``TP x PP x DP`` GPUs (see the module docstring)."""

    stage: RooflineStepCost
    """One GPU of the heaviest stage: its share of weights, KV and attention (routed experts apart)."""
    stage_layers: int
    """Transformer layers of that stage."""
    hidden_bytes: float
    """Bytes of one token's hidden state (hidden x 2 for 16-bit activations)."""
    tp: AllReduce = AllReduce()
    allreduces_per_layer: int = 2
    extra_allreduces: int = 1
    """All-reduces per pass outside the layers (the vocab-parallel embedding)."""
    pp: int = 1
    """Pipeline stages with up to ``pp`` micro-batches in flight (vLLM); 1 otherwise."""
    sends: int = 0
    """Activation hops per stage pass: 1 between vLLM stages; devices - 1 for llama.cpp's layer
    split (whose devices run one after another, priced as one device plus the hops)."""
    send_alpha_s: float = 0.0
    send_bytes_per_s: float = math.inf
    send_bytes_per_token: float = 0.0
    """A hop of a micro-batch costs alpha + tokens x bytes per token / bandwidth."""
    dp: int = 1
    dp_group: AllReduce = AllReduce()
    """The MoE dispatch/combine group (all DP x TP ranks) when DP > 1."""
    overlap_devices: int = 1
    """llama.cpp's pipeline (PR #6017): a pass of P > 1 ubatches over a layer split of D devices
    overlaps its ubatches, so its compute takes (P + D - 1) / (P D) of the one-after-another time
    (the hops are not overlapped). 1: no overlap (vLLM; Ollama's runners; decode steps, which are
    one ubatch)."""
    logit_bytes_per_seq: float = 0.0
    """Logits gathered from the TP ranks per sampled sequence (vocab x 4 B; 0 without TP)."""
    moe: MoeLayers | None = None
    _lines: dict[int, DecodeLine] = field(default_factory=dict, init=False, repr=False, compare=False)

    def _split(self, shape: BatchShape, parts: int) -> BatchShape:
        """The largest of ``parts`` even shares of a pass (ceil of every count)."""
        if parts <= 1:
            return shape
        return BatchShape(
            num_prefill_tokens=-(-shape.num_prefill_tokens // parts),
            num_prefill_seqs=-(-shape.num_prefill_seqs // parts),
            prefill_context_tokens=-(-shape.prefill_context_tokens // parts),
            prefill_attention_pairs=shape.prefill_attention_pairs / parts,
            num_decode_seqs=-(-shape.num_decode_seqs // parts),
            num_context_tokens=-(-shape.num_context_tokens // parts),
        )

    def _micro(self, seqs: int) -> int:
        """Micro-batches in flight: PP, or fewer when fewer sequences run."""
        return max(1, min(self.pp, seqs))

    def comm_time(self, tokens: int, seqs: int) -> float:
        """Collectives and hops of one micro-batch of ``tokens`` tokens, ``seqs`` sampled, on one stage."""
        nbytes = tokens * self.hidden_bytes
        count = self.allreduces_per_layer * self.stage_layers + self.extra_allreduces
        t = count * self.tp.allreduce(nbytes) + self.tp.gather(seqs * self.logit_bytes_per_seq)
        if self.moe is not None and self.dp > 1:
            t += self.moe.layers * 2 * self.dp_group.gather(nbytes * self.dp)
        if self.sends:
            t += self.sends * (self.send_alpha_s + tokens * self.send_bytes_per_token / self.send_bytes_per_s)
        return t

    def expert_time(self, tokens: int) -> float:
        """The routed experts of one micro-batch, read once per physical pass (llama.cpp's ubatch
        splits a long prompt), with every DP rank's tokens."""
        if self.moe is None:
            return 0.0
        passes = max(1, -(-tokens // self.stage.max_pass_tokens))
        return passes * self.moe.time(tokens * self.dp / passes)

    def extra_time(self, tokens: int, seqs: int) -> float:
        """Everything one micro-batch adds to the stage roofline: experts and collectives."""
        return self.comm_time(tokens, seqs) + self.expert_time(tokens)

    def step_time(self, shape: BatchShape) -> float:
        if shape.num_prefill_tokens == 0 and shape.num_prefill_seqs == 0:
            # a pure decode pass: priced by its decode line, so a fast-forwarded run of passes
            # and passes stepped one at a time cost the same
            return self.decode_line(shape.num_decode_seqs).at(shape.num_context_tokens)
        rank = self._split(shape, self.dp)
        m = self._micro(rank.num_decode_seqs + rank.num_prefill_seqs)
        micro = self._split(rank, m)
        seqs = micro.num_decode_seqs + micro.num_prefill_seqs
        compute = self.stage.step_time(micro) + self.expert_time(micro.num_tokens)
        if self.overlap_devices > 1:
            passes = max(1, -(-micro.num_tokens // self.stage.max_pass_tokens))
            compute *= (passes + self.overlap_devices - 1) / (passes * self.overlap_devices)
        return self.pp * (compute + self.comm_time(micro.num_tokens, seqs))

    def decode_line(self, num_seqs: int) -> DecodeLine:
        line = self._lines.get(num_seqs)
        if line is None:
            line = self._lines[num_seqs] = self._decode_line(num_seqs)
        return line

    def _decode_line(self, num_seqs: int) -> DecodeLine:
        per_rank = -(-num_seqs // self.dp)
        m = self._micro(per_rank)
        seqs = -(-per_rank // m)
        line = self.stage.decode_line(seqs)
        # the context of the whole step, C, is shared by dp x m micro-batches
        share = 1.0 / (self.dp * m)
        k = float(self.pp)
        return DecodeLine(
            k * (line.c0 + self.extra_time(seqs, seqs)),
            k * line.a1, k * line.b1 * share, k * line.a2, k * line.b2 * share,
        )
