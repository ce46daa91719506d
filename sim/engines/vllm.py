"""vLLM (V0 and V1, by version) and the bare paged continuous-batching architecture."""

from __future__ import annotations

import math

from sim.catalog import HardwareSpec, ModelSpec, kv_dtype_bytes
from sim.engines.base import (
    CUDA_CONTEXT_BYTES,
    GIB,
    EngineError,
    ResolvedServer,
    _activation_bytes,
    _check_one_request_fits,
    _check_vllm_scheduler,
    _format_for,
    _kv_bytes,
    _utilization_fix,
    _version,
)
from sim.engines.pricing import _speculate, _vllm_layout, _vllm_parallel_blocks, build_cost
from sim.scenario import (
    PagedBatchingSpec,
    VllmSpec,
)
from sim.servers.paged import PagedPolicy
from sim.speculation import vllm_drafting


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
    if max_tokens < max_seqs and spec.max_num_seqs is None:
        max_seqs = max_tokens
    chunked = spec.enable_chunked_prefill if spec.enable_chunked_prefill is not None else v1
    if spec.max_model_len is not None and spec.max_model_len > model.max_position_embeddings:
        raise EngineError(
            f"server {spec.label!r}: max_model_len ({spec.max_model_len}) is greater than {model.id}'s context "
            f"length ({model.max_position_embeddings}): vLLM refuses to start; set max_model_len <= "
            f"{model.max_position_embeddings} or leave it out"
        )
    _check_vllm_scheduler(spec.label, max_tokens, max_seqs, max_len, chunked)
    kv = _kv_bytes(model, spec)
    weights = model.weight_bytes(fmt)
    budget = hardware.memory_bytes * spec.gpu_memory_utilization
    non_kv = weights + _activation_bytes(model, max_tokens, max_seqs) + CUDA_CONTEXT_BYTES
    drafting = vllm_drafting(spec.speculative_config, model) if spec.speculative_config else None
    block_kv = kv
    if drafting is not None:
        if not v1:
            raise EngineError(
                f"server {spec.label!r}: speculative_config is modelled for vLLM's V1 engine; use version >= 0.8"
            )
        if drafting.drafter is not None:  # the drafter's weights, and its KV in the same blocks
            non_kv += drafting.extra_weight_bytes(fmt)
            block_kv = kv + _kv_bytes(drafting.drafter, spec)
    layout = _vllm_layout(spec, model, hardware, fmt)
    if drafting is not None and layout is not None:
        raise EngineError(
            f"server {spec.label!r}: speculative_config together with tensor/pipeline/data parallelism is not "
            "modelled yet; drop speculative_config or use one GPU"
        )
    one_request = math.ceil(max_len / spec.block_size) * spec.block_size * kv
    if spec.num_gpu_blocks_override:
        num_blocks = spec.num_gpu_blocks_override
        fixes = [f"set num_gpu_blocks_override >= {math.ceil(max_len / spec.block_size)}"]
    elif layout is not None:
        num_blocks = _vllm_parallel_blocks(spec, layout, model, hardware, max_tokens, max_seqs)
        fixes = ["raise tensor_parallel_size or pipeline_parallel_size", "lower max_model_len"]
    else:
        fixes = _utilization_fix(non_kv + one_request, hardware, spec.gpu_memory_utilization)
        if non_kv >= budget:
            fixes = fixes or ["quantize (quantization: awq)", "lower max_num_batched_tokens", "use larger hardware"]
            raise EngineError(
                f"server {spec.label!r}: weights ({weights / GIB:.1f} GiB) plus activations do not fit in "
                f"gpu_memory_utilization={spec.gpu_memory_utilization} x {hardware.memory_gib:g} GiB; "
                + " or ".join(fixes)
            )
        num_blocks = int((budget - non_kv) // (block_kv * spec.block_size))
        kv_fp8 = model.kv_bytes_per_token(kv_dtype_bytes("fp8"))
        if spec.kv_cache_dtype == "auto" and (budget - non_kv) // (kv_fp8 * spec.block_size) * spec.block_size >= max_len:
            fixes.append("use kv_cache_dtype: fp8")
    capacity = num_blocks * spec.block_size
    _check_one_request_fits(spec.label, capacity, max_len, fixes)
    # DP ranks (each its own pool and batch) and PP micro-batches step as one engine here
    dp, pp = (layout.dp, layout.pp) if layout is not None else (1, 1)
    policy = PagedPolicy(
        num_blocks=num_blocks * dp,
        block_size=spec.block_size,
        max_num_seqs=max_seqs * dp,
        max_num_batched_tokens=max_tokens * dp * pp,
        max_model_len=max_len,
        enable_chunked_prefill=chunked,
        enable_prefix_caching=spec.enable_prefix_caching if spec.enable_prefix_caching is not None else v1,
        prefill_first=not v1,
        watermark_blocks=0 if v1 else max(1, num_blocks // 100),
        max_num_queued_reqs=spec.max_num_queued_reqs or 0,
    )
    cost, profile = build_cost(spec, "vllm", model, hardware, fmt, kv, 1 << 30, layout)
    notes: dict[str, object] = {
        "engine_version": "V1" if v1 else "V0", "num_kv_blocks": num_blocks, "kv_capacity_tokens": capacity,
        "max_num_seqs": max_seqs, "max_num_batched_tokens": max_tokens, "max_model_len": max_len,
    }
    if layout is not None:
        notes.update(layout.notes)
    resolved = ResolvedServer(spec.label, "vllm", policy, cost, None, fmt.name, profile, notes)
    return _speculate(resolved, drafting, spec, fmt)


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
    _check_one_request_fits(
        spec.label, capacity, max_len, [f"set num_kv_blocks >= {math.ceil(max_len / spec.block_size)}"]
    )
    if not spec.enable_chunked_prefill and spec.max_num_batched_tokens < max_len:
        _check_vllm_scheduler(spec.label, spec.max_num_batched_tokens, 1, max_len, False)
    policy = PagedPolicy(
        num_blocks=num_blocks, block_size=spec.block_size, max_num_seqs=spec.max_num_seqs,
        max_num_batched_tokens=spec.max_num_batched_tokens, max_model_len=max_len,
        enable_chunked_prefill=spec.enable_chunked_prefill, enable_prefix_caching=spec.enable_prefix_caching,
        prefill_first=spec.prefill_first,
    )
    cost, profile = build_cost(spec, "vllm", model, hardware, fmt, kv, 1 << 30)
    return ResolvedServer(spec.label, "paged_batching", policy, cost, None, fmt.name, profile, {"num_kv_blocks": num_blocks})


