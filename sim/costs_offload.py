"""Step cost of a model split between one GPU and the host CPU (llama.cpp / Ollama partial offload).

The devices run one after another (the GPU idles while the CPU layers run: ollama #6529), so a
pass costs

    t = t_gpu(its layers) + t_cpu(the other layers) + hops x (alpha + rows x hidden x 4 B / link)

(rows: every token into the first GPU layer; only the sampled rows into, or out of, the output
layer, since llama.cpp keeps just the rows that need logits in the last layer)

each part a :class:`~sim.costs.RooflineStepCost` restricted to its layers (the GPU's with the
GPU profile, the CPU's with the host CPU's profile). With op offload (llama.cpp's default,
``--op-offload``), a physical pass of at least :data:`MIN_STREAM_TOKENS` tokens runs the CPU
layers on the GPU instead, their weights copied over the host link for every ubatch
(``ggml_backend_cuda_device_offload_op``'s ``min_batch_size = 32``): the CPU part becomes the
GPU's roofline of those layers plus ``passes x bytes / link``. The copy is not overlapped with
compute (an assumption on the pessimistic side).

Decode lines add the parts' lines: exact when each part's first line dominates throughout (the
memory-bound decode of both devices, the usual case); otherwise the max of the pairwise sums, a
lower bound of the true sum.

:class:`ExpertOffloadStepCost` prices llama.cpp's expert offload of a mixture-of-experts model
(``--cpu-moe``, ``--n-cpu-moe``): every layer on the GPU but the routed experts of ``L_c`` layers
in host RAM. A physical pass of ``n`` tokens costs the GPU's pass (its layers, with the experts
of its other MoE layers) plus, for the ``L_c`` layers, either

* the CPU: the distinct experts the pass routes to, D(n) = E (1 - (1 - k/E)^n), read at the host
  CPU's roofline (``max(bytes, FLOPs)`` per layer, the MoE term of a CPU-only run), and the hidden
  state of every token sent to the host and back, ``2 L_c (alpha + n x hidden x 4 B / link)``; or
* with op offload and ``n >= 32``: the same experts priced on the GPU, plus the copy of the D(n)
  experts the ubatch routes to over the host link, ``L_c x D(n) x expert bytes / link``
  (ASSUMED: only the experts the ubatch uses are copied, as ggml's scheduler does for
  ``MUL_MAT_ID`` weights in host buffers in 2025 builds by our reading; LOCAL_SERVERS.md §3.3
  says only that CPU-resident weights are copied per ubatch. At n >= 32 tokens D(n) is already
  87 % of Qwen3-30B-A3B's 128 experts and 99.9 % at n = 128, so this only matters for short prompts).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol

from sim.costs import DecodeLine, RooflineStepCost, StepCost
from sim.shapes import BatchShape

__all__ = ["MIN_STREAM_TOKENS", "ExpertOffloadStepCost", "ExpertTerm", "OffloadStepCost"]

MIN_STREAM_TOKENS = 32
"""Batch size from which the CUDA backend takes CPU-resident weights' ops (llama.cpp ggml-cuda)."""


@dataclass(frozen=True, slots=True)
class OffloadStepCost:
    """A pass over a GPU part and a host-CPU part (see the module docstring)."""

    gpu: RooflineStepCost | None
    """The GPU's layers (None when every layer is on the CPU)."""
    cpu: RooflineStepCost
    """The CPU's layers on the host CPU."""
    stream: RooflineStepCost | None
    """The CPU's layers priced on the GPU (op offload), None when op offload is off."""
    stream_bytes_per_pass: float
    """Weight bytes of the CPU's layers copied to the GPU per streamed physical pass."""
    hops: int
    """Boundaries every token crosses (into the first GPU layer)."""
    output_hops: int
    """Boundaries only the sampled rows cross (between the last layer and the output layer)."""
    hop_alpha_s: float
    hop_bytes_per_token: float
    link_bytes_per_s: float
    _lines: dict[int, DecodeLine] = field(default_factory=dict, init=False, repr=False, compare=False)

    def with_overheads(self, seq_s: float, step_s: float) -> OffloadStepCost:
        """This cost with per-sequence and per-pass seconds added (the engine front end's in-engine
        part), once per pass: on the CPU part and on its streamed form, one of which every pass runs."""
        def add(part: RooflineStepCost) -> RooflineStepCost:
            return replace(part, seq_overhead_s=part.seq_overhead_s + seq_s, step_overhead_s=part.step_overhead_s + step_s)
        return replace(self, cpu=add(self.cpu), stream=add(self.stream) if self.stream is not None else None)

    def _hop_time(self, tokens: int, rows: int, passes: int) -> float:
        """Activation copies of a pass of ``tokens`` tokens, ``rows`` of them sampled."""
        t = 0.0
        if self.hops:
            t += self.hops * (passes * self.hop_alpha_s + tokens * self.hop_bytes_per_token / self.link_bytes_per_s)
        if self.output_hops:
            t += self.output_hops * (passes * self.hop_alpha_s + rows * self.hop_bytes_per_token / self.link_bytes_per_s)
        return t

    def _streams(self, tokens: int, passes: int) -> bool:
        return self.stream is not None and tokens >= MIN_STREAM_TOKENS * passes

    def step_time(self, shape: BatchShape) -> float:
        if shape.num_prefill_tokens == 0 and shape.num_prefill_seqs == 0:
            return self.decode_line(shape.num_decode_seqs).at(shape.num_context_tokens)
        tokens = shape.num_tokens
        passes = max(1, -(-tokens // self.cpu.max_pass_tokens))
        t = self._hop_time(tokens, shape.num_decode_seqs + shape.num_prefill_seqs + shape.num_spec_tokens, passes)
        if self.gpu is not None:
            t += self.gpu.step_time(shape)
        if self.stream is not None and self._streams(tokens, passes):
            return t + self.stream.step_time(shape) + passes * self.stream_bytes_per_pass / self.link_bytes_per_s
        return t + self.cpu.step_time(shape)

    def decode_line(self, num_seqs: int) -> DecodeLine:
        line = self._lines.get(num_seqs)
        if line is None:
            line = self._lines[num_seqs] = self._decode_line(num_seqs)
        return line

    def _decode_line(self, num_seqs: int) -> DecodeLine:
        passes = max(1, -(-num_seqs // self.cpu.max_pass_tokens))
        c0 = self._hop_time(num_seqs, num_seqs, passes)
        if self.stream is not None and self._streams(num_seqs, passes):
            other = self.stream.decode_line(num_seqs)
            c0 += passes * self.stream_bytes_per_pass / self.link_bytes_per_s
        else:
            other = self.cpu.decode_line(num_seqs)
        if self.gpu is None:
            return DecodeLine(other.c0 + c0, other.a1, other.b1, other.a2, other.b2)
        g = self.gpu.decode_line(num_seqs)
        return DecodeLine(g.c0 + other.c0 + c0, g.a1 + other.a1, g.b1 + other.b1, g.a2 + other.a2, g.b2 + other.b2)


class ExpertTerm(Protocol):
    """The routed experts of some MoE layers on one device (:class:`sim.costs_parallel.MoeLayers`)."""

    @property
    def layers(self) -> int: ...

    def distinct(self, tokens: float) -> float:
        """Expected distinct experts ``tokens`` tokens touch in one layer."""
        ...

    def time(self, tokens: float) -> float:
        """Seconds of the experts of all its layers for one pass of ``tokens`` tokens."""
        ...


@dataclass(frozen=True, slots=True)
class ExpertOffloadStepCost:
    """A pass of an MoE model whose routed experts of some layers are in host RAM (module docstring)."""

    gpu: StepCost
    """The model on the GPU with the routed experts of its GPU-resident MoE layers only."""
    cpu_experts: ExpertTerm
    """The routed experts of the CPU-expert layers at the host CPU's roofline."""
    stream_experts: ExpertTerm | None
    """The same layers' experts priced on the GPU (op offload); None when op offload is off."""
    expert_bytes: float
    """Bytes of one expert (gate, up and down), copied per used expert when streamed."""
    max_pass_tokens: int
    """Tokens per physical pass (the ubatch)."""
    hop_alpha_s: float
    hop_bytes_per_token: float
    link_bytes_per_s: float
    _lines: dict[int, DecodeLine] = field(default_factory=dict, init=False, repr=False, compare=False)

    def streams(self, tokens: float) -> bool:
        """A physical pass of ``tokens`` tokens runs the CPU-resident experts on the GPU."""
        return self.stream_experts is not None and tokens >= MIN_STREAM_TOKENS

    def cpu_read_bytes(self, tokens: float) -> float:
        """Expert bytes the CPU reads in a physical pass of ``tokens`` tokens (none when streamed)."""
        if self.streams(tokens):
            return 0.0
        return self.cpu_experts.layers * self.cpu_experts.distinct(tokens) * self.expert_bytes

    def expert_time(self, tokens: float) -> float:
        """Seconds the CPU-resident experts add to one physical pass of ``tokens`` tokens."""
        layers = self.cpu_experts.layers
        if tokens <= 0 or layers == 0:
            return 0.0
        if self.stream_experts is not None and self.streams(tokens):
            copy = layers * self.stream_experts.distinct(tokens) * self.expert_bytes / self.link_bytes_per_s
            return self.stream_experts.time(tokens) + copy
        hops = 2 * layers * (self.hop_alpha_s + tokens * self.hop_bytes_per_token / self.link_bytes_per_s)
        return self.cpu_experts.time(tokens) + hops

    def _extra(self, tokens: int) -> float:
        passes = max(1, -(-tokens // self.max_pass_tokens))
        return passes * self.expert_time(tokens / passes)

    def step_time(self, shape: BatchShape) -> float:
        if shape.num_prefill_tokens == 0 and shape.num_prefill_seqs == 0:
            return self.decode_line(shape.num_decode_seqs).at(shape.num_context_tokens)
        return self.gpu.step_time(shape) + self._extra(shape.num_tokens)

    def decode_line(self, num_seqs: int) -> DecodeLine:
        line = self._lines.get(num_seqs)
        if line is None:
            g = self.gpu.decode_line(num_seqs)
            line = self._lines[num_seqs] = DecodeLine(g.c0 + self._extra(num_seqs), g.a1, g.b1, g.a2, g.b2)
        return line
