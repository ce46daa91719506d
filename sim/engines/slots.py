"""Slot engines: Ollama (by version), llama.cpp's llama-server (by build), and the bare serial-decode
and single-queue architectures."""

from __future__ import annotations

from sim.catalog import HardwareSpec, ModelSpec, WeightFormat
from sim.engines.base import (
    CUDA_CONTEXT_BYTES,
    GIB,
    EngineError,
    ResolvedServer,
    ServerSpecT,
    _format_for,
    _kv_bytes,
    _version,
)
from sim.engines.offload import kv_on_host_server, llama_cpp_offload, offload_server, ollama_offload
from sim.engines.pricing import (
    _check_split_fits,
    _check_weights_fit,
    _speculate,
    _split_layout,
    build_cost,
)
from sim.layouts import (
    Layout,
    ollama_gpus,
)
from sim.offload import LLAMA_CPP_FIT_BUILD, fit_context
from sim.scenario import (
    LlamaCppSpec,
    OllamaSpec,
    SampledServiceSpec,
    SerialDecodeSpec,
    SingleQueueSpec,
)
from sim.servers.slots import BudgetMode, SlotPolicy
from sim.speculation import llama_cpp_drafting


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


def ollama_max_queue(spec: OllamaSpec) -> int:
    """OLLAMA_MAX_QUEUE by version (LOCAL_SERVERS.md §1.1): none up to 0.1.32 (one global mutex, no
    scheduler queue), 10 hard-coded in 0.1.33, 512 (the env default) from 0.1.34; set: as set."""
    if spec.max_queue is not None:
        return spec.max_queue
    v = _version(spec.version)
    return 1 << 62 if v < (0, 1, 33) else 10 if v < (0, 1, 34) else 512


def _ollama_fixes(parallel: int, num_ctx: int, kv: float, free: float) -> list[str]:
    """Valid num_ctx / num_parallel values that fit the KV in ``free`` bytes."""
    fixes = []
    if free // (parallel * kv) >= 16:
        fixes.append(f"set num_ctx <= {int(free // (parallel * kv))}")
    if free // (num_ctx * kv) >= 1:
        fixes.append(f"num_parallel <= {int(free // (num_ctx * kv))}")
    return fixes or ["use a smaller model, a smaller kv_cache_dtype or larger hardware"]


def _ollama_policy(spec: OllamaSpec, parallel: int, num_ctx: int) -> tuple[SlotPolicy, str]:
    runner = spec.runner or ("llama-server" if _version(spec.version) >= (0, 30, 0) else "llamarunner")
    modes: dict[str, BudgetMode] = {"llamarunner": "per_seq", "ollamarunner": "shared", "llama-server": "batch"}
    policy = SlotPolicy(
        num_slots=parallel,
        slot_context_tokens=num_ctx,
        prompt_budget=spec.num_batch,
        budget_mode=modes[runner],
        context_shift=True,
        max_queue=ollama_max_queue(spec),
        load_time_s=spec.load_time_s,
        keep_alive_s=spec.keep_alive_s,
        cold_start=spec.cold_start,
    )
    return policy, runner


def _resolve_ollama(spec: OllamaSpec, model: ModelSpec, hardware: HardwareSpec) -> ResolvedServer:
    fmt = _format_for(spec, "ollama")
    kv = _kv_bytes(model, spec)
    weights = model.weight_bytes(fmt)
    parallel, num_ctx, why = _ollama_defaults(spec, kv, hardware.memory_bytes - weights - CUDA_CONTEXT_BYTES)
    offload = ollama_offload(spec, model, hardware, fmt, kv, parallel * num_ctx)
    if offload is not None:  # a split between the GPU and the host CPU
        policy, runner = _ollama_policy(spec, parallel, num_ctx)
        notes = {"num_parallel": parallel, "num_parallel_reason": why, "num_ctx": num_ctx, "runner": runner}
        return offload_server(spec, "ollama", model, hardware, fmt, kv, offload, policy,
                              ctx_tokens=parallel * num_ctx, ubatch=spec.num_batch, notes=notes)
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
    policy, runner = _ollama_policy(spec, parallel, num_ctx)
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
    shift = spec.context_shift if spec.context_shift is not None else build < CONTEXT_SHIFT_OFF_BUILD
    kv = _kv_bytes(model, spec)
    ctx_reason = "given" if spec.ctx_size else f"the default of builds before b{LLAMA_CPP_FIT_BUILD}"
    ctx = spec.ctx_size or 4096
    if spec.ctx_size is None and build >= LLAMA_CPP_FIT_BUILD and spec.no_kv_offload:  # -c 0, KV in host RAM
        ctx = model.max_position_embeddings
        ctx_reason = f"the model's training context {ctx} (-c 0; the KV cache is in host memory)"
    elif spec.ctx_size is None and build >= LLAMA_CPP_FIT_BUILD:  # -c 0 (the model's) shrunk by --fit
        ctx = fit_context(model, fmt, kv, hardware.memory_bytes * hardware.count, CUDA_CONTEXT_BYTES * hardware.count,
                          1 if unified else parallel)
        ctx_reason = (f"--fit: the model's training context {model.max_position_embeddings}"
                      + (", shrunk to leave 1 GiB free" if ctx < model.max_position_embeddings else ""))
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
    policy = SlotPolicy(
        num_slots=parallel,
        slot_context_tokens=ctx if unified else ctx // parallel,
        prompt_budget=spec.batch_size,
        budget_mode="batch",
        unified=unified,
        context_shift=shift,
    )
    notes: dict[str, object] = {"parallel": parallel, "kv_unified": unified, "ctx_size": ctx, "ctx_size_reason": ctx_reason,
                                "context_shift": shift}
    if spec.no_kv_offload:
        return kv_on_host_server(spec, model, hardware, fmt, kv, policy, ctx_tokens=ctx, notes=notes)
    offload = llama_cpp_offload(spec, model, hardware, fmt, kv, ctx)
    if offload is not None:  # a split between the GPU and the host CPU
        resolved = offload_server(spec, "llama.cpp", model, hardware, fmt, kv, offload, policy, ctx_tokens=ctx,
                                  ubatch=spec.ubatch_size, notes=notes)
        return _speculate(resolved, drafting, spec, fmt)
    resolved = _slot_server(
        spec, "llama.cpp", model, hardware, fmt, kv, policy, total_ctx=ctx, ubatch=spec.ubatch_size, notes=notes,
        layout=_split_layout(spec, model, hardware, fmt, hardware.count if spec.split_mode != "none" else 1),
    )
    return _speculate(resolved, drafting, spec, fmt)


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


