"""What every engine preset shares: the resolved server, the error, versions, formats, KV and
activation bytes, and the start-up checks the engines make."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from sim.catalog import HardwareSpec, ModelSpec, WeightFormat, get_format, kv_dtype_bytes
from sim.costs import StepCost
from sim.frontend import FRONTEND_NONE, FrontendCost
from sim.noise import NOISE_NONE, SpeedNoise
from sim.profiles import (
    CostProfile,
)
from sim.scenario import (
    LlamaCppSpec,
    OllamaSpec,
    PagedBatchingSpec,
    SampledServiceSpec,
    SerialDecodeSpec,
    SingleQueueSpec,
    VllmSpec,
)
from sim.servers.paged import PagedPolicy
from sim.servers.slots import SlotPolicy
from sim.servers.speculative import SpecPolicy

GIB = 1 << 30
ServerSpecT = OllamaSpec | LlamaCppSpec | VllmSpec | SingleQueueSpec | SerialDecodeSpec | PagedBatchingSpec
CUDA_CONTEXT_BYTES = 1.0 * GIB
"""Non-KV, non-weight memory an engine process holds on a GPU (CUDA context, graphs, allocator
slack): an estimate; vLLM measures its own at start-up."""


class EngineError(ValueError):
    """A server cannot run as configured (it would fail at start-up); says what to change."""


@dataclass
class ResolvedServer:
    """Everything needed to build a server: its policy, its cost model and a memory report."""

    label: str
    engine: str
    policy: SlotPolicy | PagedPolicy | None
    cost: StepCost | None
    service: SampledServiceSpec | None = None
    weight_format: str = ""
    profile: CostProfile | None = None
    notes: dict[str, object] = field(default_factory=dict)
    speculative: SpecPolicy | None = None
    """Speculative decoding's draft policy (None: the server does not speculate)."""
    frontend: FrontendCost = FRONTEND_NONE
    """Costs outside the forward pass (sim/frontend.py); its in-engine part is in ``cost``."""
    noise: SpeedNoise = NOISE_NONE
    """The machine's speed noise (sim/noise.py): each pass's time is multiplied by its factor."""


def _version(text: str) -> tuple[int, ...]:
    nums = re.findall(r"\d+", text)
    if not nums:
        raise EngineError(f"version {text!r} has no number; write it like 0.6.7 (or b7100 for llama.cpp)")
    return tuple(int(n) for n in nums)


def _format_for(spec: ServerSpecT, engine: str) -> WeightFormat:
    name = spec.quantization
    if isinstance(spec, VllmSpec):
        name = {"awq": "awq-int4", "gptq": "gptq-int4", "awq_marlin": "awq-int4", "gptq_marlin": "gptq-int4"}.get(
            name or "", name
        ) or spec.dtype
    name = name or ("q4_k_m" if engine in ("ollama", "llama.cpp") else "bf16")
    fmt = get_format(name)
    if engine in ("ollama", "llama.cpp", "vllm") and engine not in fmt.engines:
        raise EngineError(
            f"server {spec.label!r}: {engine} cannot load weights in {fmt.name!r}; "
            f"use one of the formats {engine} loads (e.g. {'q4_k_m' if engine != 'vllm' else 'awq'})"
        )
    return fmt


ENGINE_KV_DTYPES: dict[type, tuple[str, ...]] = {
    VllmSpec: ("auto", "bf16", "fp16", "fp8", "fp8_e4m3", "fp8_e5m2"),
    LlamaCppSpec: ("auto", "f16", "bf16", "f32", "q8_0", "q4_0"),
    OllamaSpec: ("auto", "f16", "q8_0", "q4_0"),
}
"""KV-cache types each engine starts with (vLLM ``--kv-cache-dtype``, llama.cpp ``-ctk/-ctv``,
Ollama ``OLLAMA_KV_CACHE_TYPE``); the bare architectures take any known type."""


def _kv_bytes(model: ModelSpec, spec: ServerSpecT) -> float:
    """KV-cache bytes per token for the server's ``kv_cache_dtype`` (``auto`` = 16-bit)."""
    allowed = ENGINE_KV_DTYPES.get(type(spec))
    if allowed is not None and spec.kv_cache_dtype.strip().lower().replace("-", "_") not in allowed:
        raise EngineError(
            f"server {spec.label!r}: kv_cache_dtype {spec.kv_cache_dtype!r} is not a KV-cache type "
            f"{getattr(spec, 'engine', '')} starts with; use one of {', '.join(allowed)}"
        )
    return model.kv_bytes_per_token(kv_dtype_bytes("f16" if spec.kv_cache_dtype == "auto" else spec.kv_cache_dtype))


def _weights_read_per_pass(model: ModelSpec, fmt: WeightFormat) -> float:
    """Bytes streamed by one forward pass: layer weights and the lm_head (not the embedding table)."""
    body = (model.num_layer_params) * fmt.bits_per_weight / 8
    return body + model.num_lm_head_params * fmt.lm_head_bits_per_weight / 8


# ---------------------------------------------------------------------------------------------
# vLLM
# ---------------------------------------------------------------------------------------------
def _activation_bytes(model: ModelSpec, tokens: int, seqs: int) -> float:
    """Peak activation of vLLM's profiling pass: hidden states and MLP intermediates of
    ``tokens`` tokens in 16 bits, plus fp32 logits of ``seqs`` sampled sequences (an estimate)."""
    per_token = (4 * model.hidden_size + 2 * model.intermediate_size) * 2
    return tokens * per_token + 2 * seqs * model.vocab_size * 4


def _check_one_request_fits(label: str, capacity: int, max_len: int, fixes: list[str]) -> None:
    """vLLM refuses to start when one request of ``max_model_len`` tokens cannot fit in its KV cache.

    ``fixes`` are the other knobs that would make it fit (each already worked out to a valid value).
    """
    if capacity < max_len:
        options = ([f"set max_model_len <= {capacity}"] if capacity >= MIN_MODEL_LEN else []) + fixes
        raise EngineError(
            f"server {label!r}: the KV cache holds {capacity} tokens, fewer than max_model_len={max_len} "
            f"(one full-length request); {' or '.join(options) or 'use larger hardware'}"
        )


MIN_MODEL_LEN = 16
"""Smallest max_model_len the scenario schema accepts."""


def _utilization_fix(need_bytes: float, hardware: HardwareSpec, now: float) -> list[str]:
    """``raise gpu_memory_utilization to U`` when some U <= 1 gives ``need_bytes``, else nothing."""
    u = math.ceil(need_bytes / hardware.memory_bytes * 100) / 100
    return [f"raise gpu_memory_utilization to {u:g}"] if now < u <= 1 else []


def _check_vllm_scheduler(label: str, max_tokens: int, max_seqs: int, max_len: int, chunked: bool) -> None:
    """vLLM's ``SchedulerConfig`` start-up refusals (vllm/config/scheduler.py ``_verify_args``)."""
    if max_tokens < max_seqs:
        raise EngineError(
            f"server {label!r}: max_num_batched_tokens ({max_tokens}) must be >= max_num_seqs ({max_seqs}), "
            f"as vLLM requires; set max_num_batched_tokens >= {max_seqs} or max_num_seqs <= {max_tokens}"
        )
    if not chunked and max_tokens < max_len:
        fixes = [f"set max_num_batched_tokens >= {max_len}", "enable_chunked_prefill: true"]
        if max_tokens >= MIN_MODEL_LEN:
            fixes.insert(1, f"max_model_len <= {max_tokens}")
        raise EngineError(
            f"server {label!r}: with chunked prefill off, max_num_batched_tokens ({max_tokens}) is smaller than "
            f"max_model_len ({max_len}): vLLM refuses to start (a longer prompt could never be scheduled); "
            + " or ".join(fixes)
        )


