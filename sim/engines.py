"""Engine presets: Ollama, llama.cpp and vLLM defaults by version, resolved against memory.

This module turns a server spec (engine + version + overrides, or a bare architecture) plus a
model and hardware into the policy the scheduler runs and the cost model that prices its
passes. Defaults and their version history follow ENGINES.md; memory checks reproduce the
engines' own start-up failures (weights that do not fit, a KV cache too small for one request)
as errors that say what to change.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import assert_never

from sim.catalog import HardwareSpec, ModelSpec, WeightFormat, get_format, kv_dtype_bytes
from sim.catalog.base import CatalogError
from sim.costs import ConstantStepCost, LinearStepCost, RooflineStepCost, StepCost
from sim.frontend import FRONTEND_NONE, FrontendCost, select_frontend
from sim.layouts import (
    Layout,
    ollama_gpus,
    plan_layer_split,
    plan_row_split,
    plan_single,
    plan_vllm,
    step_cost,
)
from sim.parallel import ParallelError
from sim.profiles import CostProfile, describe_choice, profile_kind, select_for_threads, select_profile
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
from sim.servers.speculative import SpecPolicy
from sim.speculation import Drafting, drafted_cost, llama_cpp_drafting, vllm_drafting

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
    speculative: SpecPolicy | None = None
    """Speculative decoding's draft policy (None: the server does not speculate)."""
    frontend: FrontendCost = FRONTEND_NONE
    """Costs outside the forward pass (sim/frontend.py); its in-engine part is in ``cost``."""


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


def build_cost(
    spec: ServerSpecT,
    engine: str,
    model: ModelSpec,
    hardware: HardwareSpec,
    fmt: WeightFormat,
    kv_bytes: float,
    max_pass_tokens: int,
    layout: Layout | None = None,
) -> tuple[StepCost | None, CostProfile | None]:
    """The step-cost model a server's passes are priced with (spread over ``layout``'s GPUs)."""
    cost = spec.cost
    match cost:
        case ConstantCostSpec():
            return ConstantStepCost(cost.step_s), None
        case LinearCostSpec():
            return LinearStepCost(
                cost.overhead_s, cost.prefill_s_per_token, cost.decode_s_per_seq, cost.attention_s_per_context_token
            ), None
        case SampledServiceSpec():
            raise EngineError(
                f"server {spec.label!r}: cost: {{kind: sampled}} gives whole-request service times, which "
                f"only a kind: single_queue server takes; give {engine} cost: {{kind: roofline}} (the default), "
                "constant or linear"
            )
        case RooflineCostSpec():
            if hardware.kind == "cpu" and spec.threads is not None and hardware.cores and spec.threads > hardware.cores:
                raise EngineError(
                    f"server {spec.label!r}: threads={spec.threads} but {hardware.id} has {hardware.cores} cores; "
                    f"use threads <= {hardware.cores}"
                )
            try:
                if cost.profile is None and hardware.kind == "cpu":
                    profile = select_for_threads(engine, hardware.id, hardware.kind, model.id, fmt.name, spec.threads)
                else:
                    profile = select_profile(
                        engine, hardware.id, hardware.kind, model.id, fmt.name, cost.profile, spec.threads
                    )
            except ValueError as err:
                raise EngineError(f"server {spec.label!r}: cost.profile: {err}") from None
            p = profile.params.model_copy(
                update={k: v for k, v in cost.model_dump().items() if k in type(profile.params).model_fields and v is not None}
            )
            return _spread(layout, spec, model, hardware, fmt, RooflineStepCost(
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
                decode_scale=p.decode_scale_table(),
            )), profile
        case _:
            assert_never(cost)


# ---------------------------------------------------------------------------------------------
# Several GPUs, mixture-of-experts (sim.layouts does the placement and the pricing)
# ---------------------------------------------------------------------------------------------
def _spread(
    layout: Layout | None, spec: ServerSpecT, model: ModelSpec, hardware: HardwareSpec, fmt: WeightFormat,
    cost: RooflineStepCost,
) -> StepCost:
    """The one-device roofline as the layout's step cost; unchanged for a dense model on one device."""
    if layout is None and model.moe is None:
        return cost
    try:
        plan = layout if layout is not None else plan_single(model, fmt, 1.0, "single")
        return step_cost(plan, cost, model, hardware, fmt, skew=spec.expert_skew)
    except (ParallelError, CatalogError) as err:
        raise EngineError(f"server {spec.label!r}: {err}") from None


def _vllm_layout(spec: VllmSpec, model: ModelSpec, hardware: HardwareSpec, fmt: WeightFormat) -> Layout | None:
    """vLLM's TP/PP/DP/EP placement (None for one GPU), or its start-up refusal."""
    if spec.tensor_parallel_size * spec.pipeline_parallel_size * spec.data_parallel_size == 1 and not spec.enable_expert_parallel:
        return None
    try:
        return plan_vllm(
            model, hardware, fmt, kv_dtype_bytes("f16" if spec.kv_cache_dtype == "auto" else spec.kv_cache_dtype),
            tp=spec.tensor_parallel_size, pp=spec.pipeline_parallel_size, dp=spec.data_parallel_size,
            ep=spec.enable_expert_parallel, partition=spec.pp_layer_partition,
            disable_custom_all_reduce=spec.disable_custom_all_reduce,
        )
    except (ParallelError, CatalogError) as err:
        raise EngineError(f"server {spec.label!r}: {err}") from None


def _vllm_parallel_blocks(spec: VllmSpec, layout: Layout, model: ModelSpec, hardware: HardwareSpec, max_tokens: int, max_seqs: int) -> int:
    """KV blocks of a multi-GPU engine: each worker's free memory, the minimum over workers."""
    budget = hardware.memory_bytes * spec.gpu_memory_utilization
    activation = _activation_bytes(model, max_tokens, max_seqs) / layout.tp
    free = []
    for share in layout.shares:
        non_kv = share.weight_bytes + activation + CUDA_CONTEXT_BYTES
        if non_kv >= budget:
            raise EngineError(
                f"server {spec.label!r}: weights per GPU ({share.weight_bytes / GIB:.1f} GiB: layers {share.start}-{share.stop - 1} "
                f"at tensor_parallel_size {layout.tp}) plus activations do not fit in gpu_memory_utilization="
                f"{spec.gpu_memory_utilization} x {hardware.memory_gib:g} GiB; raise tensor_parallel_size or "
                "pipeline_parallel_size, quantize, or use larger GPUs"
            )
        free.append(budget - non_kv)
    return layout.kv_blocks(free, spec.block_size)


def _split_layout(
    spec: LlamaCppSpec | OllamaSpec, model: ModelSpec, hardware: HardwareSpec, fmt: WeightFormat, devices: int
) -> Layout | None:
    """llama.cpp's split over ``devices`` GPUs (None for one)."""
    if devices <= 1:
        return None
    kv = kv_dtype_bytes("f16" if spec.kv_cache_dtype == "auto" else spec.kv_cache_dtype)
    try:
        if isinstance(spec, LlamaCppSpec) and spec.split_mode == "row":
            return plan_row_split(model, hardware, fmt, kv, devices=devices, engine="llama.cpp")
        proportions = spec.tensor_split if isinstance(spec, LlamaCppSpec) else None
        return plan_layer_split(model, hardware, fmt, kv, devices=devices, proportions=proportions, engine=spec.engine)
    except (ParallelError, CatalogError) as err:
        raise EngineError(f"server {spec.label!r}: {err}") from None


def _check_split_fits(label: str, layout: Layout, hardware: HardwareSpec, ctx_tokens: int) -> None:
    """Every device holds its layers' weights and their KV for ``ctx_tokens`` tokens."""
    for i, share in enumerate(layout.shares):
        need = share.weight_bytes + ctx_tokens * share.kv_bytes_per_token + CUDA_CONTEXT_BYTES
        if need > hardware.memory_bytes:
            raise EngineError(
                f"server {label!r}: GPU {i} (layers {share.start}-{share.stop - 1}) needs {need / GIB:.1f} GiB "
                f"(weights and a {ctx_tokens}-token KV cache) but {hardware.id} has {hardware.memory_gib:g} GiB; "
                "lower the context, change tensor_split, quantize, or use more GPUs"
            )


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


def _ollama_fixes(parallel: int, num_ctx: int, kv: float, free: float) -> list[str]:
    """Valid num_ctx / num_parallel values that fit the KV in ``free`` bytes."""
    fixes = []
    if free // (parallel * kv) >= 16:
        fixes.append(f"set num_ctx <= {int(free // (parallel * kv))}")
    if free // (num_ctx * kv) >= 1:
        fixes.append(f"num_parallel <= {int(free // (num_ctx * kv))}")
    return fixes or ["use a smaller model, a smaller kv_cache_dtype or larger hardware"]


def _resolve_ollama(spec: OllamaSpec, model: ModelSpec, hardware: HardwareSpec) -> ResolvedServer:
    fmt = _format_for(spec, "ollama")
    kv = _kv_bytes(model, spec)
    weights = model.weight_bytes(fmt)
    gpus, placement = ollama_gpus(
        _version(spec.version), weights + CUDA_CONTEXT_BYTES, hardware.memory_bytes, hardware.count, spec.sched_spread
    )
    layout = _split_layout(spec, model, hardware, fmt, gpus)
    if layout is None:
        _check_weights_fit(spec.label, weights, hardware, fmt)
    free = hardware.memory_bytes * gpus - weights - CUDA_CONTEXT_BYTES * gpus
    parallel, num_ctx, why = _ollama_defaults(spec, kv, free)
    if layout is not None:
        _check_split_fits(spec.label, layout, hardware, parallel * num_ctx)
    if parallel * num_ctx * kv > free:
        raise EngineError(
            f"server {spec.label!r}: KV for num_parallel={parallel} x num_ctx={num_ctx} needs "
            f"{parallel * num_ctx * kv / GIB:.1f} GiB, {free / GIB:.1f} GiB free after weights; "
            + " or ".join(_ollama_fixes(parallel, num_ctx, kv, free))
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
    cost, profile = build_cost(spec, "ollama", model, hardware, fmt, kv, spec.num_batch, layout)
    notes = {"num_parallel": parallel, "num_parallel_reason": why, "num_ctx": num_ctx, "runner": runner}
    if hardware.count > 1:
        notes |= {"gpus_used": gpus, "placement": placement, **(layout.notes if layout else {})}
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
    drafting = llama_cpp_drafting(spec, build)
    if drafting is not None and drafting.drafter is not None:  # each slot holds a draft context
        draft_bytes = drafting.extra_weight_bytes(fmt) + ctx * _kv_bytes(drafting.drafter, spec)
        weights = model.weight_bytes(fmt)
        if weights + CUDA_CONTEXT_BYTES + ctx * kv + draft_bytes > hardware.memory_bytes:
            raise EngineError(
                f"server {spec.label!r}: the draft model {spec.model_draft!r} and its context need "
                f"{draft_bytes / GIB:.1f} GiB beside the target's; {hardware.id} has {hardware.memory_gib:g} GiB: "
                "use a smaller draft model or context size"
            )
    if not unified:
        _check_slot_context(spec.label, ctx, parallel, 16)
    resolved = _slot_server(
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
        layout=_split_layout(spec, model, hardware, fmt, hardware.count if spec.split_mode != "none" else 1),
    )
    return _speculate(resolved, drafting, spec, fmt)


def _speculate(resolved: ResolvedServer, drafting: Drafting | None, spec: ServerSpecT, fmt: WeightFormat) -> ResolvedServer:
    """Add speculative decoding to a resolved server: the drafter's cost, the draft policy, notes."""
    if drafting is None:
        return resolved
    if drafting.drafter is not None:
        read = _weights_read_per_pass(drafting.drafter, fmt)
        resolved.cost = drafted_cost(resolved.cost, drafting, read, _kv_bytes(drafting.drafter, spec))
    resolved.speculative = drafting.policy
    resolved.notes.update(drafting.notes)
    return resolved


def _check_slot_context(label: str, ctx: int, parallel: int, least: int) -> None:
    """llama-server splits ``ctx_size`` evenly over its slots (without --kv-unified): each needs a context."""
    if ctx // parallel < least:
        fixes = [f"set ctx_size >= {least * parallel}"] + [f"parallel <= {ctx // least}"] * (ctx >= least)
        raise EngineError(
            f"server {label!r}: ctx_size {ctx} split over parallel={parallel} slots leaves {ctx // parallel} "
            f"tokens per slot (at least {least} needed); {' or '.join(fixes)} or kv_unified: true"
        )


def _slot_server(
    spec: ServerSpecT, engine: str, model: ModelSpec, hardware: HardwareSpec, fmt: WeightFormat, kv: float,
    policy: SlotPolicy, total_ctx: int, ubatch: int, notes: dict[str, object], layout: Layout | None = None,
) -> ResolvedServer:
    weights = model.weight_bytes(fmt)
    if layout is not None:
        _check_split_fits(spec.label, layout, hardware, total_ctx)
        notes = {**notes, **layout.notes}
    else:
        _check_weights_fit(spec.label, weights, hardware, fmt)
    if layout is None and weights + CUDA_CONTEXT_BYTES + total_ctx * kv > hardware.memory_bytes:
        raise EngineError(
            f"server {spec.label!r}: a {total_ctx}-token KV cache needs {total_ctx * kv / GIB:.1f} GiB on top of "
            f"{weights / GIB:.1f} GiB of weights; {hardware.id} has {hardware.memory_gib:g} GiB: keep the total "
            f"context (ctx_size, or num_ctx x num_parallel) <= "
            f"{int((hardware.memory_bytes - weights - CUDA_CONTEXT_BYTES) // kv)} tokens"
        )
    cost, profile = build_cost(spec, engine, model, hardware, fmt, kv, ubatch, layout)
    return ResolvedServer(spec.label, engine, policy, cost, None, fmt.name, profile, notes)


def _resolve_serial(spec: SerialDecodeSpec, model: ModelSpec, hardware: HardwareSpec) -> ResolvedServer:
    fmt = _format_for(spec, "serial_decode")
    kv = _kv_bytes(model, spec)
    if not spec.kv_unified:
        _check_slot_context(spec.label, spec.ctx_size, spec.parallel, 2)
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


def _profile_notes(spec: ServerSpecT, resolved: ResolvedServer, model: ModelSpec, hardware: HardwareSpec) -> None:
    """Record which cost profile prices the server, what kind it is, and why it was chosen."""
    cost, p = spec.cost, resolved.profile
    if p is None:
        resolved.notes.update(cost_profile="-", cost_profile_kind="none",
                              cost_profile_reason=f"the scenario gives cost: {{kind: {cost.kind}}}")
        return
    named = cost.profile if isinstance(cost, RooflineCostSpec) else None
    overrides = [k for k, v in cost.model_dump().items() if k not in ("kind", "profile") and v is not None]
    why = describe_choice(p, resolved.engine, hardware, model.id, resolved.weight_format, named, overrides)
    if "selection" in p.provenance:  # chosen or interpolated by thread count (select_for_threads)
        why += f"; {p.provenance['selection']}"
    resolved.notes.update(cost_profile=p.id, cost_profile_kind=profile_kind(p.id), cost_profile_reason=why)


def resolve_server(spec: ServerSpecT, model: ModelSpec, hardware: HardwareSpec) -> ResolvedServer:
    """Map a server spec to its policy and cost model: the only place that does so."""
    resolved = _with_frontend(_resolve(spec, model, hardware), spec, hardware)
    _profile_notes(spec, resolved, model, hardware)
    return resolved


def _with_frontend(resolved: ResolvedServer, spec: ServerSpecT, hardware: HardwareSpec) -> ResolvedServer:
    """Attach the server's front end (sim/frontend.py): the fitted profile of an engine preset
    (none for bare architectures) with the spec's overrides; its in-engine costs are added to
    the roofline's per-sequence and per-pass overheads."""
    fs = spec.frontend
    version = getattr(spec, "version", None)
    try:
        if fs is not None and fs.profile is not None:
            front = select_frontend(resolved.engine, version or "", hardware.kind, fs.profile)
        elif version is not None:
            front = select_frontend(resolved.engine, version, hardware.kind)
        else:
            front = FRONTEND_NONE
    except ValueError as err:
        raise EngineError(f"server {spec.label!r}: frontend.profile: {err}") from None
    if fs is not None:
        changes = {k: v for k, v in fs.model_dump().items() if k != "profile" and v is not None}
        if changes:
            front = replace(front, id=f"{front.id} (overridden: {', '.join(sorted(changes))})", **changes)
    resolved.frontend = front
    if front.is_zero:
        return resolved
    note = front.describe()
    if (front.token_s or front.step_s) and not isinstance(resolved.cost, RooflineStepCost):
        note += " (in-engine part not applied: the cost model is not a roofline)"
    resolved.notes["frontend"] = note
    if (front.token_s or front.step_s) and isinstance(resolved.cost, RooflineStepCost):
        resolved.cost = replace(
            resolved.cost,
            seq_overhead_s=resolved.cost.seq_overhead_s + front.token_s,
            step_overhead_s=resolved.cost.step_overhead_s + front.step_s,
        )
    return resolved


def _resolve(spec: ServerSpecT, model: ModelSpec, hardware: HardwareSpec) -> ResolvedServer:
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
