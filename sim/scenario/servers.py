"""Server specs: the engines by name (Ollama, llama.cpp, vLLM), the bare architectures, their cost models."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
)

from sim.scenario.base import Spec
from sim.scenario.router import RouterSpec


# ---------------------------------------------------------------------------------------------
# Costs
# ---------------------------------------------------------------------------------------------
class RooflineCostSpec(Spec):
    """Roofline step cost from model x hardware x format, with fitted engine efficiencies."""

    kind: Literal["roofline"] = "roofline"
    """Selects this variant (roofline)."""
    profile: str | None = None
    """Cost profile file (calibration/profiles/*.yaml) or id; default: best catalog match."""
    bandwidth_efficiency: float | None = Field(gt=0, le=1.5, default=None)
    """Override: achieved fraction of peak memory bandwidth."""
    compute_efficiency: float | None = Field(gt=0, le=1.5, default=None)
    """Override: achieved fraction of peak GEMM throughput."""
    attention_efficiency: float | None = Field(gt=0, le=1.5, default=None)
    """Override: achieved fraction of peak 16-bit throughput in attention."""
    step_overhead_s: float | None = Field(ge=0, default=None)
    """Override: fixed seconds per physical forward pass."""
    seq_overhead_s: float | None = Field(ge=0, default=None)
    """Override: seconds per sequence in a pass (sampling, bookkeeping)."""


class ConstantCostSpec(Spec):
    """Every pass takes ``step_s`` (exact timelines, teaching)."""

    kind: Literal["constant"] = "constant"
    """Selects this variant (constant)."""
    step_s: float = Field(gt=0)
    """Seconds per pass."""


class LinearCostSpec(Spec):
    """t = overhead + per prompt token + per decoding sequence + per attended context token."""

    kind: Literal["linear"] = "linear"
    """Selects this variant (linear)."""
    overhead_s: float = Field(ge=0, default=0.0)
    """Fixed seconds per pass."""
    prefill_s_per_token: float = Field(ge=0, default=0.0)
    """Seconds per prompt token."""
    decode_s_per_seq: float = Field(ge=0, default=0.0)
    """Seconds per decoding sequence."""
    attention_s_per_context_token: float = Field(ge=0, default=0.0)
    """Seconds per context token attended by decoding sequences."""


class ServiceDistribution(Spec):
    """Whole-request service time distribution (queueing-theory anchor)."""

    kind: Literal["exponential", "deterministic", "gamma", "lognormal"]
    """Distribution family."""
    mean_s: float = Field(gt=0)
    """Mean service time (seconds)."""
    cv: float = Field(ge=0, default=1.0)
    """Coefficient of variation (gamma, lognormal)."""


class SampledServiceSpec(Spec):
    """Each request holds its slot for an i.i.d. sampled time: the server becomes M/G/c."""

    kind: Literal["sampled"] = "sampled"
    """Selects this variant (sampled)."""
    distribution: ServiceDistribution
    """Service-time distribution."""


CostSpec = Annotated[
    RooflineCostSpec | ConstantCostSpec | LinearCostSpec | SampledServiceSpec, Field(discriminator="kind")
]


# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------
class ServerCommon(Spec):
    """Fields every server has."""

    name: str | None = None
    """Label in tables and plots (default: engine or kind)."""
    quantization: str | None = None
    """Weight format: q4_k_m, q5_k_m, q8_0, q4_0, f16 (GGUF); awq, gptq, fp8 (vLLM)."""
    kv_cache_dtype: str = "auto"
    """KV cache element type: auto (16-bit), fp8, q8_0, q4_0."""
    cost: CostSpec = Field(default_factory=RooflineCostSpec)
    """How long a forward pass takes."""
    threads: int | None = Field(ge=1, default=None)
    """CPU threads the engine computes with (CPU serving: picks the profile measured with them)."""
    replicas: int = Field(ge=1, default=1)
    """Copies of this server, each on its own hardware, behind ``router`` (a fleet when > 1)."""
    router: RouterSpec | None = None
    """The router in front of the replicas (default with replicas > 1: round_robin)."""

    @property
    def label(self) -> str:
        """Name shown in results."""
        return self.name or getattr(self, "engine", None) or self.kind


class OllamaSpec(ServerCommon):
    """Ollama: FIFO queue in front of ``num_parallel`` llama.cpp slots (ENGINES.md A.1)."""

    engine: Literal["ollama"] = "ollama"
    """Selects this variant (ollama)."""
    version: str = "0.12.0"
    """Ollama version; selects defaults that changed (NUM_PARALLEL 1 / auto 4 / auto 2 / 1; num_ctx)."""
    num_parallel: int | None = Field(ge=1, default=None)
    """OLLAMA_NUM_PARALLEL (default by version; 0.2-0.9 pick 4 or 2 if it fits in memory, else 1)."""
    num_ctx: int | None = Field(ge=16, default=None)
    """Context per slot (default by version: 2048 until 0.6.6, 4096 after)."""
    num_batch: int = Field(ge=1, default=512)
    """Prompt tokens per iteration."""
    runner: Literal["llamarunner", "ollamarunner", "llama-server"] | None = None
    """llamarunner: num_batch per prompting slot; ollamarunner: num_batch shared by all slots;
    llama-server: n_batch = num_batch with decode tokens first (default: llama-server from 0.30,
    llamarunner before)."""
    max_queue: int = Field(ge=1, default=512)
    """OLLAMA_MAX_QUEUE: requests held while a model loads before HTTP 503."""
    keep_alive_s: float = Field(ge=0, default=300.0)
    """Idle seconds before the model is unloaded."""
    load_time_s: float = Field(ge=0, default=0.0)
    """Seconds to load the model when it is not loaded."""
    cold_start: bool = False
    """The model is not loaded when the run starts."""


class LlamaCppSpec(ServerCommon):
    """llama.cpp ``llama-server``: slots, decode tokens first, then prompt chunks (ENGINES.md A.2)."""

    engine: Literal["llama.cpp"] = "llama.cpp"
    """Selects this variant (llama.cpp)."""
    version: str = "b7100"
    """Build (bNNNN); before b7079 (Nov 2025) -np defaulted to 1, after to 4 with a unified KV."""
    parallel: int | None = Field(ge=1, default=None)
    """-np, number of slots (default by version)."""
    ctx_size: int | None = Field(ge=16, default=None)
    """-c, total context, split across slots unless unified (default 4096, the default from Nov 2024;
    current builds default to the model's context shrunk to fit memory: give it explicitly to model that)."""
    batch_size: int = Field(ge=1, default=2048)
    """-b, logical batch: decode tokens plus prompt tokens per iteration."""
    ubatch_size: int = Field(ge=1, default=512)
    """-ub, physical batch: tokens per forward pass."""
    kv_unified: bool | None = None
    """--kv-unified (default: on only when -np is not given, in builds with auto -np)."""
    context_shift: bool | None = None
    """--context-shift (default by version: on in old builds, off in current ones)."""
    logits_all: bool = False
    """Compute logits (the LM head) for every prompt token, not only the last: llama-server never
    does; llama-cpp-python's OpenAI server does by default (its ``logits_all`` setting is True)."""


class VllmSpec(ServerCommon):
    """vLLM: paged KV cache and continuous batching (V1 engine; ``version < 0.8`` gives V0)."""

    engine: Literal["vllm"] = "vllm"
    """Selects this variant (vllm)."""
    version: str = "0.11.0"
    """vLLM version: < 0.8 is the V0 engine (prefill-first passes, no chunked prefill)."""
    dtype: str = "bf16"
    """--dtype for unquantized weights: bf16, fp16."""
    max_num_seqs: int | None = Field(ge=1, default=None)
    """Most requests running at once (default 256; 1024 on >= 70 GiB non-A100 GPUs in >= 0.10)."""
    max_num_batched_tokens: int | None = Field(ge=1, default=None)
    """Token budget per pass (default 2048; 8192 on >= 70 GiB non-A100 GPUs in >= 0.10)."""
    block_size: int = Field(ge=1, default=16)
    """Tokens per KV block."""
    gpu_memory_utilization: float = Field(gt=0, le=1, default=0.9)
    """Fraction of GPU memory vLLM may use (weights + activations + KV)."""
    max_model_len: int | None = Field(ge=16, default=None)
    """Longest prompt + output (default: the model's context length)."""
    enable_prefix_caching: bool | None = None
    """Prefix cache (default: on in V1, off in V0)."""
    enable_chunked_prefill: bool | None = None
    """Chunked prefill (always on in V1; off by default in V0)."""
    num_gpu_blocks_override: int | None = Field(ge=1, default=None)
    """Use exactly this many KV blocks instead of the memory-derived number."""
    max_num_queued_reqs: int | None = Field(ge=1, default=None)
    """--max-num-queued-reqs (vLLM PR #49445, 2026-07): HTTP 503 once this many requests are in
    flight, waiting + running (default: off, vLLM never rejects)."""


class SingleQueueSpec(ServerCommon):
    """Bare single-queue architecture: FIFO queue -> ``num_parallel`` slots with static KV."""

    kind: Literal["single_queue"] = "single_queue"
    """Selects this variant (single_queue)."""
    num_parallel: int = Field(ge=1, default=1)
    """Slots (c of M/G/c)."""
    num_ctx: int = Field(ge=2, default=4096)
    """Context per slot."""
    num_batch: int = Field(ge=1, default=512)
    """Prompt tokens per slot per iteration."""
    max_queue: int = Field(ge=1, default=512)
    """Requests held while loading before 503."""
    keep_alive_s: float = Field(ge=0, default=float("inf"))
    """Idle seconds before unloading."""
    load_time_s: float = Field(ge=0, default=0.0)
    """Seconds to load the model."""
    cold_start: bool = False
    """Not loaded at the start."""


class SerialDecodeSpec(ServerCommon):
    """Bare serial-decode / slot architecture (llama.cpp server knobs)."""

    kind: Literal["serial_decode"] = "serial_decode"
    """Selects this variant (serial_decode)."""
    parallel: int = Field(ge=1, default=1)
    """Slots (1 = strictly serial decoding)."""
    ctx_size: int = Field(ge=2, default=4096)
    """Total context, split evenly across slots unless kv_unified."""
    batch_size: int = Field(ge=1, default=2048)
    """Tokens per iteration (decode tokens first)."""
    ubatch_size: int = Field(ge=1, default=512)
    """Tokens per physical forward pass."""
    kv_unified: bool = False
    """One KV pool shared by all slots."""
    context_shift: bool = False
    """Truncate/shift instead of erroring/stopping on a full context."""
    logits_all: bool = False
    """LM head on every prompt token (llama-cpp-python's server default), not only the last."""


class PagedBatchingSpec(ServerCommon):
    """Bare paged continuous-batching architecture (vLLM knobs)."""

    kind: Literal["paged_batching"] = "paged_batching"
    """Selects this variant (paged_batching)."""
    max_num_seqs: int = Field(ge=1, default=256)
    """Most running requests."""
    max_num_batched_tokens: int = Field(ge=1, default=2048)
    """Token budget per pass."""
    block_size: int = Field(ge=1, default=16)
    """Tokens per KV block."""
    num_kv_blocks: int | None = Field(ge=1, default=None)
    """KV capacity in blocks (default: derived from gpu_memory_utilization)."""
    gpu_memory_utilization: float = Field(gt=0, le=1, default=0.9)
    """Fraction of memory for weights + activations + KV when num_kv_blocks is not given."""
    max_model_len: int | None = Field(ge=16, default=None)
    """Longest prompt + output accepted (longer requests get HTTP 400); at most the KV capacity.
    Default: the model's context length or the KV capacity, whichever is smaller."""
    enable_prefix_caching: bool = False
    """Reuse cached prompt blocks by hash."""
    enable_chunked_prefill: bool = True
    """Split prompts across passes under the token budget."""
    prefill_first: bool = False
    """vLLM V0 scheduling: whole-prompt passes first, decodes otherwise."""


def _server_tag(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("engine") or value.get("kind") or "missing")
    return str(getattr(value, "engine", None) or getattr(value, "kind", "missing"))


ServerSpec = Annotated[
    Annotated[OllamaSpec, Tag("ollama")]
    | Annotated[LlamaCppSpec, Tag("llama.cpp")]
    | Annotated[VllmSpec, Tag("vllm")]
    | Annotated[SingleQueueSpec, Tag("single_queue")]
    | Annotated[SerialDecodeSpec, Tag("serial_decode")]
    | Annotated[PagedBatchingSpec, Tag("paged_batching")],
    Discriminator(
        _server_tag,
        custom_error_type="server_kind",
        custom_error_message=(
            "each server needs engine: ollama | llama.cpp | vllm, "
            "or kind: single_queue | serial_decode | paged_batching"
        ),
    ),
]

