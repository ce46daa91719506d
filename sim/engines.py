"""Engine presets: Ollama, llama.cpp and vLLM defaults by version, resolved against memory.

This module turns a server spec (engine + version + overrides, or a bare architecture) plus a
model and hardware into the policy the scheduler runs and the cost model that prices its
passes. Defaults and their version history follow ENGINES.md; memory checks reproduce the
engines' own start-up failures (weights that do not fit, a KV cache too small for one request)
as errors that say what to change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import assert_never

from sim.catalog import HardwareSpec, ModelSpec, WeightFormat, get_format, kv_dtype_bytes
from sim.costs import ConstantStepCost, LinearStepCost, RooflineStepCost, StepCost
from sim.profiles import CostProfile, select_profile
from sim.scenario import (
    ConstantCostSpec,
    LinearCostSpec,
    LlamaCppSpec,
    OllamaSpec,
    PagedBatchingSpec,
    RooflineCostSpec,
    SampledServiceSpec,
    SerialDecodeSpec,
    SingleQueueSpec,
    VllmSpec,
)
from sim.servers.paged import PagedPolicy
from sim.servers.slots import BudgetMode, SlotPolicy

__all__ = ["EngineError", "ResolvedServer", "resolve_server"]

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


def _kv_bytes(model: ModelSpec, spec: ServerSpecT) -> float:
    """KV-cache bytes per token for the server's ``kv_cache_dtype`` (``auto`` = 16-bit)."""
    return model.kv_bytes_per_token(kv_dtype_bytes("f16" if spec.kv_cache_dtype == "auto" else spec.kv_cache_dtype))


def _weights_read_per_pass(model: ModelSpec, fmt: WeightFormat) -> float:
    """Bytes streamed by one forward pass: layer weights and the lm_head (not the embedding table)."""
    body = (model.num_layer_params) * fmt.bits_per_weight / 8
    return body + model.num_lm_head_params * fmt.lm_head_bits_per_weight / 8


def build_cost(
    spec: ServerSpecT,
    engine: str,
    model: ModelSpec,
    hardware: HardwareSpec,
    fmt: WeightFormat,
    kv_bytes: float,
    max_pass_tokens: int,
) -> tuple[StepCost | None, CostProfile | None]:
    """The step-cost model a server's passes are priced with."""
    cost = spec.cost
    match cost:
        case ConstantCostSpec():
            return ConstantStepCost(cost.step_s), None
        case LinearCostSpec():
            return LinearStepCost(
                cost.overhead_s, cost.prefill_s_per_token, cost.decode_s_per_seq, cost.attention_s_per_context_token
            ), None
        case SampledServiceSpec():
            return None, None
        case RooflineCostSpec():
            try:
                profile = select_profile(
                    engine, hardware.id, hardware.kind, model.id, fmt.name, cost.profile, spec.threads
                )
            except ValueError as err:
                raise EngineError(f"server {spec.label!r}: cost.profile: {err}") from None
            p = profile.params.model_copy(
                update={k: v for k, v in cost.model_dump().items() if k in type(profile.params).model_fields and v is not None}
            )
            return RooflineStepCost(
                weight_bytes_per_pass=_weights_read_per_pass(model, fmt),
                kv_bytes_per_token=kv_bytes,
                layer_matmul_params=model.num_layer_matmul_params,
                lm_head_params=model.num_lm_head_params,
                attention_flops_per_pair=model.attention_flops_per_pair,
                bandwidth_bytes_per_s=hardware.bandwidth_bytes_per_s * p.bandwidth_efficiency,
                gemm_flops_per_s=hardware.peak_flops(fmt.compute_dtype) * p.compute_efficiency,
                attention_flops_per_s=hardware.peak_flops("fp16") * p.attention_efficiency,
                step_overhead_s=p.step_overhead_s,
                seq_overhead_s=p.seq_overhead_s,
                max_pass_tokens=max_pass_tokens,
                lm_head_on_every_prompt_token=getattr(spec, "logits_all", False),
                per_kernel=hardware.kind != "cpu",
            ), profile
        case _:
            assert_never(cost)


def _check_weights_fit(label: str, weights: float, hardware: HardwareSpec, fmt: WeightFormat) -> None:
    if weights + CUDA_CONTEXT_BYTES > hardware.memory_bytes:
        raise EngineError(
            f"server {label!r}: {fmt.name} weights need {weights / GIB:.1f} GiB but {hardware.id} has "
            f"{hardware.memory_gib:g} GiB; use a smaller quantization, a smaller model or larger hardware"
        )


# ---------------------------------------------------------------------------------------------
# Ollama
# ---------------------------------------------------------------------------------------------
def _ollama_defaults(spec: OllamaSpec, kv_per_token: float, free_bytes: float) -> tuple[int, int, str]:
    """NUM_PARALLEL and num_ctx by version (ENGINES.md A.1.2), with the auto fit check."""
    v = _version(spec.version)
    num_ctx = spec.num_ctx or (2048 if v < (0, 6, 7) else 4096)
    if spec.num_parallel is not None:
        return spec.num_parallel, num_ctx, "set"
    if v < (0, 2, 0) or v >= (0, 10, 0):
        return 1, num_ctx, f"default for {spec.version}"
    auto = 4 if v < (0, 6, 7) else 2
    fits = auto * num_ctx * kv_per_token <= free_bytes
    return (auto if fits else 1), num_ctx, f"auto {auto}->{'fits' if fits else 'falls back to 1'} ({spec.version})"


def _resolve_ollama(spec: OllamaSpec, model: ModelSpec, hardware: HardwareSpec) -> ResolvedServer:
    fmt = _format_for(spec, "ollama")
    kv = _kv_bytes(model, spec)
    weights = model.weight_bytes(fmt)
    _check_weights_fit(spec.label, weights, hardware, fmt)
    free = hardware.memory_bytes - weights - CUDA_CONTEXT_BYTES
    parallel, num_ctx, why = _ollama_defaults(spec, kv, free)
    if parallel * num_ctx * kv > free:
        raise EngineError(
            f"server {spec.label!r}: KV for num_parallel={parallel} x num_ctx={num_ctx} needs "
            f"{parallel * num_ctx * kv / GIB:.1f} GiB, {free / GIB:.1f} GiB free after weights; lower num_ctx or num_parallel"
        )
    runner = spec.runner or ("llama-server" if _version(spec.version) >= (0, 30, 0) else "llamarunner")
    modes: dict[str, BudgetMode] = {"llamarunner": "per_seq", "ollamarunner": "shared", "llama-server": "batch"}
    policy = SlotPolicy(
        num_slots=parallel,
        slot_context_tokens=num_ctx,
        prompt_budget=spec.num_batch,
        budget_mode=modes[runner],
        context_shift=True,
        max_queue=spec.max_queue,
        load_time_s=spec.load_time_s,
        keep_alive_s=spec.keep_alive_s,
        cold_start=spec.cold_start,
    )
    cost, profile = build_cost(spec, "ollama", model, hardware, fmt, kv, spec.num_batch)
    notes = {"num_parallel": parallel, "num_parallel_reason": why, "num_ctx": num_ctx, "runner": runner}
    return ResolvedServer(spec.label, "ollama", policy, cost, None, fmt.name, profile, notes)


# ---------------------------------------------------------------------------------------------
# llama.cpp
# ---------------------------------------------------------------------------------------------
AUTO_PARALLEL_BUILD = 7079
"""First build (2025-11) whose llama-server defaults to -np auto = 4 slots with a unified KV."""
CONTEXT_SHIFT_OFF_BUILD = 5000
"""Approximate build after which --context-shift is off by default (ENGINES.md A.2.1; the exact
build is not recorded there: an assumption)."""


def _resolve_llama_cpp(spec: LlamaCppSpec, model: ModelSpec, hardware: HardwareSpec) -> ResolvedServer:
    fmt = _format_for(spec, "llama.cpp")
    build = _version(spec.version)[0]
    auto = spec.parallel is None and build >= AUTO_PARALLEL_BUILD
    parallel = spec.parallel or (4 if auto else 1)
    unified = spec.kv_unified if spec.kv_unified is not None else auto
    ctx = spec.ctx_size or 4096
    shift = spec.context_shift if spec.context_shift is not None else build < CONTEXT_SHIFT_OFF_BUILD
    kv = _kv_bytes(model, spec)
    return _slot_server(
        spec, "llama.cpp", model, hardware, fmt, kv,
        SlotPolicy(
            num_slots=parallel,
            slot_context_tokens=ctx if unified else ctx // parallel,
            prompt_budget=spec.batch_size,
            budget_mode="batch",
            unified=unified,
            context_shift=shift,
        ),
        total_ctx=ctx, ubatch=spec.ubatch_size,
        notes={"parallel": parallel, "kv_unified": unified, "ctx_size": ctx, "context_shift": shift},
    )


def _slot_server(
    spec: ServerSpecT, engine: str, model: ModelSpec, hardware: HardwareSpec, fmt: WeightFormat, kv: float,
    policy: SlotPolicy, total_ctx: int, ubatch: int, notes: dict[str, object],
) -> ResolvedServer:
    weights = model.weight_bytes(fmt)
    _check_weights_fit(spec.label, weights, hardware, fmt)
    if weights + CUDA_CONTEXT_BYTES + total_ctx * kv > hardware.memory_bytes:
        raise EngineError(
            f"server {spec.label!r}: a {total_ctx}-token KV cache needs {total_ctx * kv / GIB:.1f} GiB on top of "
            f"{weights / GIB:.1f} GiB of weights; {hardware.id} has {hardware.memory_gib:g} GiB: lower the context size"
        )
    cost, profile = build_cost(spec, engine, model, hardware, fmt, kv, ubatch)
    return ResolvedServer(spec.label, engine, policy, cost, None, fmt.name, profile, notes)


def _resolve_serial(spec: SerialDecodeSpec, model: ModelSpec, hardware: HardwareSpec) -> ResolvedServer:
    fmt = _format_for(spec, "serial_decode")
    kv = _kv_bytes(model, spec)
    policy = SlotPolicy(
        num_slots=spec.parallel,
        slot_context_tokens=spec.ctx_size if spec.kv_unified else spec.ctx_size // spec.parallel,
        prompt_budget=spec.batch_size, budget_mode="batch", unified=spec.kv_unified, context_shift=spec.context_shift,
    )
    return _slot_server(spec, "llama.cpp", model, hardware, fmt, kv, policy, spec.ctx_size, spec.ubatch_size, {})


def _resolve_single_queue(spec: SingleQueueSpec, model: ModelSpec, hardware: HardwareSpec) -> ResolvedServer:
    policy = SlotPolicy(
        num_slots=spec.num_parallel, slot_context_tokens=spec.num_ctx, prompt_budget=spec.num_batch,
        budget_mode="per_seq", context_shift=True, max_queue=spec.max_queue, load_time_s=spec.load_time_s,
        keep_alive_s=spec.keep_alive_s, cold_start=spec.cold_start,
    )
    if isinstance(spec.cost, SampledServiceSpec):
        return ResolvedServer(spec.label, "single_queue", policy, None, spec.cost)
    fmt = _format_for(spec, "single_queue")
    kv = _kv_bytes(model, spec)
    return _slot_server(
        spec, "ollama", model, hardware, fmt, kv, policy, spec.num_ctx * spec.num_parallel, spec.num_batch, {}
    )


# ---------------------------------------------------------------------------------------------
# vLLM
# ---------------------------------------------------------------------------------------------
def _activation_bytes(model: ModelSpec, tokens: int, seqs: int) -> float:
    """Peak activation of vLLM's profiling pass: hidden states and MLP intermediates of
    ``tokens`` tokens in 16 bits, plus fp32 logits of ``seqs`` sampled sequences (an estimate)."""
    per_token = (4 * model.hidden_size + 2 * model.intermediate_size) * 2
    return tokens * per_token + 2 * seqs * model.vocab_size * 4


def _check_one_request_fits(label: str, capacity: int, max_len: int, knob: str) -> None:
    """vLLM refuses to start when one request of ``max_model_len`` tokens cannot fit in its KV cache."""
    if capacity < max_len:
        raise EngineError(
            f"server {label!r}: the KV cache holds {capacity} tokens, fewer than max_model_len={max_len} "
            f"(one full-length request); set max_model_len <= {capacity} or raise {knob}"
        )


def _resolve_vllm(spec: VllmSpec, model: ModelSpec, hardware: HardwareSpec) -> ResolvedServer:
    fmt = _format_for(spec, "vllm")
    v = _version(spec.version)
    v1 = v >= (0, 8, 0)
    big = hardware.memory_gib >= 70 and not hardware.id.startswith("a100") and v >= (0, 10, 0)
    max_len = spec.max_model_len or model.max_position_embeddings
    max_seqs = spec.max_num_seqs or (1024 if big else 256)
    if v1:
        max_tokens = spec.max_num_batched_tokens or (8192 if big else 2048)
    else:
        max_tokens = spec.max_num_batched_tokens or max(max_len, 2048)
    if max_tokens < max_seqs:
        max_seqs = min(max_seqs, max_tokens) if spec.max_num_seqs is None else max_seqs
        if max_tokens < max_seqs:
            raise EngineError(
                f"server {spec.label!r}: max_num_batched_tokens ({max_tokens}) must be >= max_num_seqs ({max_seqs}); raise it"
            )
    kv = _kv_bytes(model, spec)
    weights = model.weight_bytes(fmt)
    budget = hardware.memory_bytes * spec.gpu_memory_utilization
    non_kv = weights + _activation_bytes(model, max_tokens, max_seqs) + CUDA_CONTEXT_BYTES
    if spec.num_gpu_blocks_override:
        num_blocks = spec.num_gpu_blocks_override
    else:
        if non_kv >= budget:
            raise EngineError(
                f"server {spec.label!r}: weights ({weights / GIB:.1f} GiB) plus activations do not fit in "
                f"gpu_memory_utilization={spec.gpu_memory_utilization} x {hardware.memory_gib:g} GiB; "
                "raise gpu_memory_utilization, quantize (quantization: awq) or use larger hardware"
            )
        num_blocks = int((budget - non_kv) // (kv * spec.block_size))
    capacity = num_blocks * spec.block_size
    _check_one_request_fits(spec.label, capacity, max_len, "gpu_memory_utilization")
    policy = PagedPolicy(
        num_blocks=num_blocks,
        block_size=spec.block_size,
        max_num_seqs=max_seqs,
        max_num_batched_tokens=max_tokens,
        max_model_len=max_len,
        enable_chunked_prefill=spec.enable_chunked_prefill if spec.enable_chunked_prefill is not None else v1,
        enable_prefix_caching=spec.enable_prefix_caching if spec.enable_prefix_caching is not None else v1,
        prefill_first=not v1,
        watermark_blocks=0 if v1 else max(1, num_blocks // 100),
        max_num_queued_reqs=spec.max_num_queued_reqs or 0,
    )
    cost, profile = build_cost(spec, "vllm", model, hardware, fmt, kv, 1 << 30)
    notes: dict[str, object] = {
        "engine_version": "V1" if v1 else "V0", "num_kv_blocks": num_blocks, "kv_capacity_tokens": capacity,
        "max_num_seqs": max_seqs, "max_num_batched_tokens": max_tokens, "max_model_len": max_len,
    }
    return ResolvedServer(spec.label, "vllm", policy, cost, None, fmt.name, profile, notes)


def _resolve_paged(spec: PagedBatchingSpec, model: ModelSpec, hardware: HardwareSpec) -> ResolvedServer:
    fmt = _format_for(spec, "paged_batching")
    kv = _kv_bytes(model, spec)
    num_blocks = spec.num_kv_blocks
    if num_blocks is None:
        weights = model.weight_bytes(fmt)
        free = hardware.memory_bytes * spec.gpu_memory_utilization - weights - CUDA_CONTEXT_BYTES - _activation_bytes(
            model, spec.max_num_batched_tokens, spec.max_num_seqs
        )
        if free <= 0:
            raise EngineError(f"server {spec.label!r}: no memory left for KV; set num_kv_blocks or use larger hardware")
        num_blocks = int(free // (kv * spec.block_size))
    capacity = num_blocks * spec.block_size
    # (a request the pool cannot hold whole could never finish: by default refused like one over
    # max_model_len; an explicit max_model_len must fit, as vLLM checks at start-up)
    max_len = spec.max_model_len or min(model.max_position_embeddings, capacity)
    _check_one_request_fits(spec.label, capacity, max_len, "num_kv_blocks")
    policy = PagedPolicy(
        num_blocks=num_blocks, block_size=spec.block_size, max_num_seqs=spec.max_num_seqs,
        max_num_batched_tokens=spec.max_num_batched_tokens, max_model_len=max_len,
        enable_chunked_prefill=spec.enable_chunked_prefill, enable_prefix_caching=spec.enable_prefix_caching,
        prefill_first=spec.prefill_first,
    )
    cost, profile = build_cost(spec, "vllm", model, hardware, fmt, kv, 1 << 30)
    return ResolvedServer(spec.label, "paged_batching", policy, cost, None, fmt.name, profile, {"num_kv_blocks": num_blocks})


def resolve_server(spec: ServerSpecT, model: ModelSpec, hardware: HardwareSpec) -> ResolvedServer:
    """Map a server spec to its policy and cost model: the only place that does so."""
    match spec:
        case OllamaSpec():
            return _resolve_ollama(spec, model, hardware)
        case LlamaCppSpec():
            return _resolve_llama_cpp(spec, model, hardware)
        case VllmSpec():
            return _resolve_vllm(spec, model, hardware)
        case SingleQueueSpec():
            return _resolve_single_queue(spec, model, hardware)
        case SerialDecodeSpec():
            return _resolve_serial(spec, model, hardware)
        case PagedBatchingSpec():
            return _resolve_paged(spec, model, hardware)
        case _:
            assert_never(spec)
