"""The cost model of a server's passes: a roofline priced with a fitted profile, spread over a
node's GPUs when the server is parallel, and the drafter's cost when it speculates."""

from __future__ import annotations

from typing import assert_never

from sim.catalog import HardwareSpec, ModelSpec, WeightFormat, kv_dtype_bytes
from sim.catalog.base import CatalogError
from sim.costs import ConstantStepCost, LinearStepCost, RooflineStepCost, StepCost
from sim.engines.base import (
    CUDA_CONTEXT_BYTES,
    GIB,
    EngineError,
    ResolvedServer,
    ServerSpecT,
    _activation_bytes,
    _kv_bytes,
    _weights_read_per_pass,
)
from sim.layouts import (
    Layout,
    plan_layer_split,
    plan_row_split,
    plan_single,
    plan_vllm,
    step_cost,
)
from sim.parallel import ParallelError
from sim.profiles import (
    CostProfile,
    select_for_threads,
    select_profile,
)
from sim.scenario import (
    ConstantCostSpec,
    LinearCostSpec,
    LlamaCppSpec,
    OllamaSpec,
    RooflineCostSpec,
    SampledServiceSpec,
    VllmSpec,
)
from sim.speculation import Drafting, drafted_cost


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


