"""Server specs: the engines by name (Ollama, llama.cpp, vLLM) and the bare architectures."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import (
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from sim.scenario.base import Spec
from sim.scenario.costs import CostSpec, FrontendSpec, RooflineCostSpec, SpeedNoiseSpec
from sim.scenario.local import LlamaSwapSpec, OllamaModelSpec
from sim.scenario.router import RouterSpec
from sim.scenario.speculative import SpeculativeConfig, check_acceptance


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
    replicas: int = Field(ge=1, le=10_000, default=1)
    """Copies of this server, each on its own hardware, behind ``router`` (a fleet when > 1; at
    most 10,000: a run builds every replica, ~20 kB and 0.3 ms each, before the first event)."""
    router: RouterSpec | None = None
    """The router in front of the replicas (default with replicas > 1: round_robin)."""
    expert_skew: float = Field(ge=0, default=0.0)
    """Routing skew of a mixture-of-experts model: Zipf exponent of the experts' popularity (0 =
    uniform routing). No measured distribution is cited; a what-if knob."""
    frontend: FrontendSpec | None = None
    """Per-request costs outside the forward pass (default: the engine's fitted front end)."""
    speed_noise: SpeedNoiseSpec | None = None
    """The machine's speed noise (default: the hardware's fitted profile, if it has one)."""

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
    max_queue: int | None = Field(ge=1, default=None)
    """OLLAMA_MAX_QUEUE: requests held while a model loads before HTTP 503 (default by version: none
    up to 0.1.32, a single mutex; 10 hard-coded in 0.1.33; 512 from 0.1.34)."""
    keep_alive_s: float = Field(ge=0, default=300.0)
    """Idle seconds before the model is unloaded."""
    load_time_s: float = Field(ge=0, default=0.0)
    """Seconds to load the model when it is not loaded."""
    cold_start: bool = False
    """The model is not loaded when the run starts."""
    sched_spread: bool = False
    """OLLAMA_SCHED_SPREAD: always spread the model across all GPUs (default: the fewest that fit)."""
    models: list[OllamaModelSpec] | None = None
    """Several models on this server: requests name one (drawn by weight from the seed); the
    scheduler loads, keeps and evicts them by version (docs/local_servers.md: one global mutex up to
    0.1.32, one scheduler loop for every request up to 0.11.4, a fast path for loaded models from
    0.11.5, the 80 % rule from 0.30). Unset: the scenario's model."""
    max_loaded_models: int | None = Field(ge=1, default=None)
    """OLLAMA_MAX_LOADED_MODELS (default by version: 1 up to 0.1.48, 3 x GPUs from 0.2.0)."""
    storage: str = "nvme-pcie4"
    """The disk the models load from (``sim/catalog/storage.yaml``: hdd-7200, sata-ssd, nvme-pcie3/4/5)."""
    load_cap_gb_s: float = Field(gt=0, default=3.0)
    """Most GB/s Ollama's loader reads, whatever the disk (ollama #9720: 1-3 GB/s from storage that
    reads 14-22 GB/s, v0.6.0); load = start-up + bytes / min(disk, this)."""
    startup_s: float = Field(ge=0, default=1.0)
    """Seconds to start a runner besides reading its weights (warm loads of 0.6-1.1 s on an M3 Pro,
    LOCAL_SERVERS.md §4)."""
    page_cache: bool = True
    """Model files stay in the host's page cache (LRU, the host CPU's RAM): a reload of a cached
    file only copies its weights to the GPU (``startup_s`` + bytes / the host link); false: every
    load reads the disk."""
    vram_recovery_s: float = Field(ge=0, default=0.5)
    """Seconds Ollama waits after unloading for the GPU memory to come back (it polls every 250 ms,
    typically 0.5-1.5 s; the low end assumed)."""

    num_gpu: int | None = Field(ge=-1, default=None)
    """num_gpu: layers on the GPU, the last ones (the output layer counts as one); -1 or unset: Ollama's
    own split by version (its memory estimate; from 0.30 llama-server's --fit); 0: CPU only."""

    @model_validator(mode="after")
    def _mix(self) -> Self:
        if self.models is not None:
            total = sum(m.weight for m in self.models)
            if not self.models or abs(total - 1.0) > 1e-9:
                fixed = ", ".join(f"{m.model}: {m.weight / total:.3g}" for m in self.models) if self.models else "one model: 1"
                raise ValueError(f"models: the weights sum to {total:g}, not 1; scale them ({fixed})")
            names = [m.model for m in self.models]
            if len(set(names)) < len(names):
                raise ValueError(f"models: {sorted({n for n in names if names.count(n) > 1})} listed twice; list each model once")
        return self


class LlamaCppSpec(ServerCommon):
    """llama.cpp ``llama-server``: slots, decode tokens first, then prompt chunks (ENGINES.md A.2)."""

    engine: Literal["llama.cpp"] = "llama.cpp"
    """Selects this variant (llama.cpp)."""
    version: str = "b7100"
    """Build (bNNNN); before b7079 (Nov 2025) -np defaulted to 1, after to 4 with a unified KV."""
    parallel: int | None = Field(ge=1, default=None)
    """-np, number of slots (default by version)."""
    ctx_size: int | None = Field(ge=16, default=None)
    """-c, total context, split across slots unless unified. Default by build: 4096 (Nov 2024) until
    --fit (b7400, assumed); then the model's training context, shrunk by --fit to leave 1 GiB of the
    GPU free, not below 4096 (computed with every layer on the GPU)."""
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
    split_mode: Literal["none", "layer", "row"] = "layer"
    """-sm: how a model is spread over several GPUs (the hardware's ``count``): ``layer`` (default)
    contiguous layers per GPU with each layer's KV on its GPU, one device after another; ``row``
    weight rows split, KV on the main GPU; ``none`` one GPU."""
    tensor_split: list[float] | None = None
    """-ts: proportions of the layers per GPU, e.g. [3, 1] (default: in proportion to free memory,
    i.e. even over identical GPUs)."""
    n_gpu_layers: int | Literal["auto"] | None = None
    """-ngl: layers on the GPU, the last ones (the output layer counts as one; 99 or 999: all). Default
    by build: all layers until --fit (b7400, assumed), ``auto`` (--fit: as many as leave 1 GiB free) after."""
    op_offload: bool = True
    """--op-offload (default on): passes of >= 32 tokens run the CPU layers on the GPU, their weights
    copied over PCIe; false: --no-op-offload."""
    no_kv_offload: bool = False
    """-nkvo / --no-kv-offload: the KV cache stays in host memory and attention runs on the host CPU
    (every layer's weights on the GPU); frees the GPU of the KV for long contexts."""
    cpu_moe: bool = False
    """--cpu-moe / -cmoe: the routed experts of every layer of a mixture-of-experts model in host RAM,
    run on the CPU (attention, router and shared experts stay on the GPU; docs/local_servers.md)."""
    n_cpu_moe: int | None = Field(ge=0, default=None)
    """--n-cpu-moe N / -ncmoe N: the routed experts of the first N layers in host RAM."""
    override_tensor: list[str] | None = None
    """-ot PATTERN=CPU, e.g. ``blk\\.(1?[0-9])\\.ffn_.*_exps=CPU``: only patterns that put whole routed-expert
    tensors (gate, up and down of a layer) on the CPU are modelled; anything else is refused."""
    main_gpu: int = Field(ge=0, default=0)
    """-mg: the GPU of ``split_mode: none`` and the one holding KV and results under ``row``."""
    llama_swap: LlamaSwapSpec | None = None
    """Several models behind llama-swap (a process per model, swapped on demand; docs/local_servers.md)."""
    model_draft: str | None = None
    """--model-draft: a draft model (catalog id, run in the server's weight format) that turns on
    speculative decoding; each slot drafts with its own draft context."""
    draft_max: int | None = Field(ge=0, le=64, default=None)
    """--draft-max: draft tokens per slot per step (default 16; 0 turns speculation off)."""
    draft_min: int | None = Field(ge=0, default=None)
    """--draft-min: a draft shorter than this is dropped (default by build: 5 before ~b4800, 0 after)."""
    draft_acceptance_rate: float | None = Field(ge=0, le=1, default=None)
    """Probability that a draft token matches the target's, given the ones before it did
    (i.i.d.); not a llama.cpp option. Default: the published draft-model acceptance."""
    draft_acceptance_rates: list[float] | None = None
    """Per position: P(the first i draft tokens are all accepted); not a llama.cpp option."""

    @model_validator(mode="after")
    def _draft_options(self) -> Self:
        check_acceptance(self.draft_acceptance_rate, self.draft_acceptance_rates, "draft_")
        given = [name for name in ("draft_max", "draft_min", "draft_acceptance_rate", "draft_acceptance_rates")
                 if getattr(self, name) is not None]
        if given and self.model_draft is None:
            raise ValueError(f"{', '.join(given)} need model_draft (--model-draft), the draft model's catalog id")
        return self


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
    block_size: Literal[1, 8, 16, 32, 64, 128] = 16
    """Tokens per KV block (vLLM's CacheConfig accepts 1, 8, 16, 32, 64, 128; CUDA builds up to 32)."""
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
    tensor_parallel_size: int = Field(ge=1, default=1)
    """-tp: GPUs each layer's weights are sharded over (Megatron style; two all-reduces per layer)."""
    pipeline_parallel_size: int = Field(ge=1, default=1)
    """-pp: pipeline stages (layers split as vLLM's get_pp_indices; PP batches in flight)."""
    data_parallel_size: int = Field(ge=1, default=1)
    """-dp: engine replicas stepping together (each its own KV cache and scheduler share)."""
    enable_expert_parallel: bool = False
    """--enable-expert-parallel: each of the TP x DP ranks holds whole experts (MoE models only)."""
    disable_custom_all_reduce: bool = False
    """--disable-custom-all-reduce: NCCL for every all-reduce."""
    pp_layer_partition: list[int] | None = None
    """VLLM_PP_LAYER_PARTITION: layers per pipeline stage (must sum to the model's layers)."""
    speculative_config: SpeculativeConfig | None = None
    """Speculative decoding (vLLM >= 0.8, the V1 engine): method, num_speculative_tokens, draft model."""


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
    block_size: int = Field(ge=1, le=4096, default=16)
    """Tokens per KV block (at most 4096)."""
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

