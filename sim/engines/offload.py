"""Partial offload in the slot engines: Ollama's ``num_gpu`` and its default split by version,
llama.cpp's ``-ngl`` / ``--fit``, and the expert offload of mixture-of-experts models
(``--cpu-moe``, ``--n-cpu-moe``, ``-ot``; ``--fit``'s experts-first rule, which Ollama 0.30+
inherits); the GPU and host memory checks; the resolved server with the offload step cost
(placement and pricing in :mod:`sim.offload`).

A split is only made on one GPU: a model that fits keeps today's path (and results, bit for bit),
as does any explicit setting that puts every layer on the GPU.
"""

from __future__ import annotations

import dataclasses

from sim.catalog import HardwareSpec, ModelSpec, WeightFormat
from sim.catalog.base import CatalogError
from sim.costs import RooflineStepCost
from sim.costs_parallel import ParallelStepCost
from sim.engines.base import CUDA_CONTEXT_BYTES, GIB, EngineError, ResolvedServer, _version
from sim.engines.pricing import build_cost
from sim.offload import (
    LLAMA_CPP_FIT_BUILD,
    LLAMA_CPP_OUTPUT_FIRST_BUILD,
    OLLAMA_FIT_VERSION,
    Offload,
    cpu_expert_layers,
    expert_offload_cost,
    fit_experts,
    fit_layers,
    host_link,
    host_of,
    kv_on_host_cost,
    offload_cost,
    ollama_legacy_layers,
    place,
    place_experts,
)
from sim.scenario import LlamaCppSpec, OllamaSpec
from sim.servers.slots import SlotPolicy

__all__ = ["kv_on_host_server", "llama_cpp_offload", "offload_server", "ollama_offload"]


def _fits_today(model: ModelSpec, fmt: WeightFormat, kv: float, hardware: HardwareSpec, ctx_tokens: int) -> bool:
    """The whole model and its KV fit on one GPU by the engines' check (weights + KV + context)."""
    return model.weight_bytes(fmt) + CUDA_CONTEXT_BYTES + ctx_tokens * kv <= hardware.memory_bytes


def _place(label: str, model: ModelSpec, fmt: WeightFormat, kv: float, ngl: int, output_first: bool, reason: str) -> Offload:
    try:
        return place(model, fmt, kv, ngl, output_first=output_first, reason=reason)
    except CatalogError as err:
        raise EngineError(f"server {label!r}: {err}") from None


def _single_gpu(label: str, field: str, value: int, model: ModelSpec, hardware: HardwareSpec) -> bool:
    """Partial offload is modelled on one GPU; several GPUs with CPU layers are refused."""
    if hardware.count == 1 and hardware.kind != "cpu":
        return True
    if value < model.num_layers + 1:
        raise EngineError(
            f"server {label!r}: {field}={value} with {hardware.count}x {hardware.id}: partial offload is modelled "
            f"on one GPU only; use {field} >= {model.num_layers + 1} (every layer) or hardware with one GPU"
        )
    return False


def ollama_offload(spec: OllamaSpec, model: ModelSpec, hardware: HardwareSpec, fmt: WeightFormat, kv: float,
                   ctx_tokens: int) -> Offload | None:
    """Ollama's split of ``model`` (None: every layer on the GPU, today's server)."""
    n = model.num_layers
    v = _version(spec.version)
    if spec.num_gpu is not None and spec.num_gpu > n + 1:
        raise EngineError(
            f"server {spec.label!r}: num_gpu={spec.num_gpu} but {model.id} has {n} layers plus the output layer "
            f"({n + 1}); use num_gpu <= {n + 1} (all of them), 0 (CPU only), or leave it unset for Ollama's own split"
        )
    output_first = v >= OLLAMA_FIT_VERSION
    if spec.num_gpu is not None and spec.num_gpu >= 0:
        if not _single_gpu(spec.label, "num_gpu", spec.num_gpu, model, hardware) or spec.num_gpu == n + 1:
            return None
        return _place(spec.label, model, fmt, kv, spec.num_gpu, output_first, f"num_gpu {spec.num_gpu}")
    if hardware.count > 1 or hardware.kind == "cpu" or _fits_today(model, fmt, kv, hardware, ctx_tokens):
        return None
    if output_first and model.moe is not None:
        return _fit_experts(spec.label, model, fmt, kv, hardware, ctx_tokens, f"Ollama {spec.version}: llama-server --fit")
    if output_first:
        ngl = fit_layers(model, fmt, kv, ctx_tokens, hardware.memory_bytes, CUDA_CONTEXT_BYTES, output_first=True)
        why = f"Ollama {spec.version}: llama-server --fit (1 GiB left free) chose -ngl {ngl}"
    else:
        ngl = ollama_legacy_layers(model, fmt, kv, ctx_tokens, hardware.memory_bytes)
        why = f"Ollama {spec.version}: its memory estimate (EstimateGPULayers) chose {ngl} layers"
    return _place(spec.label, model, fmt, kv, ngl, output_first, why)


def llama_cpp_offload(spec: LlamaCppSpec, model: ModelSpec, hardware: HardwareSpec, fmt: WeightFormat, kv: float,
                      ctx_tokens: int) -> Offload | None:
    """llama-server's split for ``-ngl`` and the expert options (None: every layer on the GPU,
    today's server)."""
    n = model.num_layers
    build = _version(spec.version)[0]
    output_first = build >= LLAMA_CPP_OUTPUT_FIRST_BUILD
    ngl = spec.n_gpu_layers
    experts = _expert_options(spec, model, hardware, fmt, kv)
    if experts is not None:
        return experts
    if ngl is None:
        ngl = "auto" if build >= LLAMA_CPP_FIT_BUILD else None
    if model.moe is not None and ngl != "auto" and (ngl is None or ngl >= n + 1) and hardware.count == 1 \
            and hardware.kind != "cpu" and not _fits_today(model, fmt, kv, hardware, ctx_tokens):
        need = model.weight_bytes(fmt) + CUDA_CONTEXT_BYTES + ctx_tokens * kv
        most = fit_experts(model, fmt, kv, ctx_tokens, hardware.memory_bytes + 1024 * (1 << 20), CUDA_CONTEXT_BYTES)
        fix = f"n_cpu_moe: {most} or more, or cpu_moe: true" if most is not None else "a smaller ctx_size"
        raise EngineError(
            f"server {spec.label!r}: every layer of {model.id} on the GPU needs {need / GIB:.1f} GiB ({fmt.name} weights, "
            f"a {ctx_tokens}-token KV cache, the CUDA context) but {hardware.id} has {hardware.memory_gib:g} GiB; keep "
            f"routed experts in host RAM ({fix}), quantize further, or use a larger GPU"
        )
    if ngl is None:
        return None
    if ngl == "auto":
        if hardware.count > 1 or hardware.kind == "cpu" or _fits_today(model, fmt, kv, hardware, ctx_tokens):
            return None
        if model.moe is not None:
            return _fit_experts(spec.label, model, fmt, kv, hardware, ctx_tokens, "--fit")
        fit = fit_layers(model, fmt, kv, ctx_tokens, hardware.memory_bytes, CUDA_CONTEXT_BYTES, output_first=output_first)
        return _place(spec.label, model, fmt, kv, fit, output_first, f"--fit (1 GiB left free) chose -ngl {fit}")
    if not _single_gpu(spec.label, "n_gpu_layers", ngl, model, hardware) or ngl >= n + 1:
        return None
    return _place(spec.label, model, fmt, kv, ngl, output_first, f"-ngl {ngl}")


def _expert_options(spec: LlamaCppSpec, model: ModelSpec, hardware: HardwareSpec, fmt: WeightFormat,
                    kv: float) -> Offload | None:
    """The expert offload ``cpu_moe`` / ``n_cpu_moe`` / ``override_tensor`` ask for; None when none
    is given or they move no expert (today's server, bit for bit)."""
    try:
        layers = cpu_expert_layers(model, cpu_moe=spec.cpu_moe, n_cpu_moe=spec.n_cpu_moe, override=spec.override_tensor)
    except CatalogError as err:
        raise EngineError(f"server {spec.label!r}: {err}") from None
    if not layers:
        return None
    n = model.num_layers
    asked = "cpu_moe" if spec.cpu_moe else "n_cpu_moe" if spec.n_cpu_moe is not None else "override_tensor"
    ngl = spec.n_gpu_layers
    if isinstance(ngl, int) and ngl < n + 1:
        raise EngineError(
            f"server {spec.label!r}: n_gpu_layers={ngl} with {asked}: whole layers on the CPU besides experts on the CPU "
            f"is not modelled; use n_gpu_layers >= {n + 1} (or leave it unset) with {asked}, or leave out {asked}"
        )
    if hardware.count > 1 or hardware.kind == "cpu":
        raise EngineError(
            f"server {spec.label!r}: {asked} with {hardware.count}x {hardware.id}: expert offload is modelled between "
            f"one GPU and its host; use hardware with one GPU, or leave out {asked}"
        )
    opts = ["--cpu-moe"] * spec.cpu_moe + [f"--n-cpu-moe {spec.n_cpu_moe}"] * (spec.n_cpu_moe is not None) + [
        f"-ot {p}" for p in spec.override_tensor or ()]
    why = f"{' '.join(opts)}: experts of {len(layers)}/{model.num_moe_layers} MoE layers on the CPU"
    return place_experts(model, fmt, kv, len(layers), reason=why)


def _fit_experts(label: str, model: ModelSpec, fmt: WeightFormat, kv: float, hardware: HardwareSpec, ctx_tokens: int,
                 who: str) -> Offload:
    """``--fit`` for an MoE model: experts to RAM first, then back to the GPU from the last layer."""
    first = fit_experts(model, fmt, kv, ctx_tokens, hardware.memory_bytes, CUDA_CONTEXT_BYTES)
    if first is None:
        off = place_experts(model, fmt, kv, model.num_moe_layers, reason="")
        need = off.gpu_weight_bytes + ctx_tokens * kv + CUDA_CONTEXT_BYTES
        raise EngineError(
            f"server {label!r}: with every expert of {model.id} on the CPU the GPU still needs {need / GIB:.1f} GiB "
            f"(attention, router, output layer, a {ctx_tokens}-token KV cache, the CUDA context) plus --fit's 1 GiB on "
            f"{hardware.id} ({hardware.memory_gib:g} GiB); lower the context or use a larger GPU"
        )
    layers = sum(1 for i in range(first) if model.moe is None or i not in model.moe.dense_layers)
    why = f"{who} (1 GiB left free) kept the experts of the first {first} layers in RAM (as --n-cpu-moe {first})"
    return place_experts(model, fmt, kv, layers, reason=why)


def _check_memory(label: str, field: str, off: Offload, model: ModelSpec, fmt: WeightFormat, kv: float,
                  hardware: HardwareSpec, host: HardwareSpec, ctx_tokens: int, output_first: bool,
                  slots: int = 1) -> None:
    gpu = off.gpu_weight_bytes + ctx_tokens * off.gpu_kv_per_token + CUDA_CONTEXT_BYTES
    if off.offloaded and gpu > hardware.memory_bytes:
        most = fit_layers(model, fmt, kv, ctx_tokens, hardware.memory_bytes + 1024 * (1 << 20), CUDA_CONTEXT_BYTES,
                          output_first=output_first)
        raise EngineError(
            f"server {label!r}: {field}={off.offloaded} puts {gpu / GIB:.1f} GiB (weights, a {ctx_tokens}-token KV "
            f"cache, the CUDA context) on {hardware.id}, which has {hardware.memory_gib:g} GiB; use {field} <= {most}"
        )
    ram = off.cpu_weight_bytes + ctx_tokens * off.cpu_kv_per_token
    if ram > host.memory_bytes:
        # the context that fits beside the CPU layers' weights (Ollama: per slot, num_ctx x slots)
        room = max(host.memory_bytes - off.cpu_weight_bytes, 0.0) / max(off.cpu_kv_per_token, 1e-9)
        ctx_field = "num_ctx" if field == "num_gpu" else "ctx_size"
        fits = int(room // slots) if room >= slots * 256 else 0
        context = f"use {ctx_field} <= {fits}, " if fits else ""
        raise EngineError(
            f"server {label!r}: the layers left on the CPU need {ram / GIB:.1f} GiB of host memory, {host.id} has "
            f"{host.memory_gib:g} GiB; {context}put more layers on the GPU ({field}), quantize, or name a larger host "
            "(hardware: {gpu: ..., host: <cpu id>})"
        )


def offload_server(spec: OllamaSpec | LlamaCppSpec, engine: str, model: ModelSpec, hardware: HardwareSpec,
                   fmt: WeightFormat, kv: float, off: Offload, policy: SlotPolicy, *, ctx_tokens: int,
                   ubatch: int, notes: dict[str, object]) -> ResolvedServer:
    """The server with ``off``'s split priced on the GPU and the host CPU."""
    field = "num_gpu" if engine == "ollama" else "n_gpu_layers"
    try:
        host = host_of(hardware)
        link = host_link(hardware)
    except CatalogError as err:
        raise EngineError(f"server {spec.label!r}: {err}") from None
    if off.cpu_expert_layers:
        return _expert_server(spec, engine, model, hardware, host, link, fmt, kv, off, policy,
                              ctx_tokens=ctx_tokens, ubatch=ubatch, notes=notes)
    output_first = off.output_on_gpu or (engine == "ollama" and _version(spec.version) >= OLLAMA_FIT_VERSION) or (
        engine == "llama.cpp" and _version(spec.version)[0] >= LLAMA_CPP_OUTPUT_FIRST_BUILD)
    slots = policy.num_slots if engine == "ollama" else 1  # Ollama's num_ctx is per slot
    _check_memory(spec.label, field, off, model, fmt, kv, hardware, host, ctx_tokens, output_first, slots)
    gpu_cost, profile = build_cost(spec, engine, model, hardware, fmt, kv, ubatch, None)
    cpu_cost, cpu_profile = build_cost(spec, engine, model, host, fmt, kv, ubatch, None)
    if not isinstance(gpu_cost, RooflineStepCost) or not isinstance(cpu_cost, RooflineStepCost):
        raise EngineError(
            f"server {spec.label!r}: a split between GPU and CPU ({field}={off.offloaded}) is priced with the "
            "roofline cost only; use cost: {kind: roofline} or put every layer on the GPU"
        )
    op_offload = spec.op_offload if isinstance(spec, LlamaCppSpec) else True
    cost = offload_cost(off, model, gpu_cost, cpu_cost, link, op_offload=op_offload)
    split = {
        field: off.offloaded, "offloaded": f"{off.offloaded}/{model.num_layers + 1} layers",
        "output_layer": "GPU" if off.output_on_gpu else "CPU", "split": off.ps(ctx_tokens), "split_reason": off.reason,
        "host": host.id, "host_profile": cpu_profile.id if cpu_profile else None, "op_offload": op_offload,
        "vram_gib": round((off.gpu_weight_bytes + ctx_tokens * off.gpu_kv_per_token + CUDA_CONTEXT_BYTES * (off.offloaded > 0)) / GIB, 2),
        "host_ram_gib": round((off.cpu_weight_bytes + ctx_tokens * off.cpu_kv_per_token) / GIB, 2),
    }
    return ResolvedServer(spec.label, engine, policy, cost, None, fmt.name, profile, {**notes, **split})


def _expert_server(spec: OllamaSpec | LlamaCppSpec, engine: str, model: ModelSpec, hardware: HardwareSpec,
                   host: HardwareSpec, link: float, fmt: WeightFormat, kv: float, off: Offload, policy: SlotPolicy, *,
                   ctx_tokens: int, ubatch: int, notes: dict[str, object]) -> ResolvedServer:
    """The server with the routed experts of ``off.cpu_expert_layers`` layers in host RAM."""
    assert model.moe is not None
    vram = off.gpu_weight_bytes + ctx_tokens * off.gpu_kv_per_token + CUDA_CONTEXT_BYTES
    field = "n_cpu_moe" if engine == "llama.cpp" else "num_ctx"
    if vram > hardware.memory_bytes:
        most = fit_experts(model, fmt, kv, ctx_tokens, hardware.memory_bytes + 1024 * (1 << 20), CUDA_CONTEXT_BYTES)
        fix = f"use n_cpu_moe >= {most}" if most is not None else "lower ctx_size"
        raise EngineError(
            f"server {spec.label!r}: {off.reason} puts {vram / GIB:.1f} GiB on {hardware.id} (weights, a "
            f"{ctx_tokens}-token KV cache, the CUDA context), which has {hardware.memory_gib:g} GiB; {fix}, "
            "or cpu_moe: true"
        )
    if off.cpu_weight_bytes > host.memory_bytes:
        raise EngineError(
            f"server {spec.label!r}: the experts on the CPU need {off.cpu_weight_bytes / GIB:.1f} GiB of host memory, "
            f"{host.id} has {host.memory_gib:g} GiB; keep more experts on the GPU ({field}), quantize, or name a "
            "larger host (hardware: {gpu: ..., host: <cpu id>})"
        )
    gpu_cost, profile = build_cost(spec, engine, model, hardware, fmt, kv, ubatch, None)
    cpu_cost, cpu_profile = build_cost(spec, engine, model, host, fmt, kv, ubatch, None)
    if not isinstance(gpu_cost, ParallelStepCost) or gpu_cost.moe is None or not isinstance(cpu_cost, ParallelStepCost) \
            or cpu_cost.moe is None:
        raise EngineError(
            f"server {spec.label!r}: experts on the CPU are priced with the roofline cost only; use cost: "
            "{kind: roofline} or keep every expert on the GPU"
        )
    gpu_layers = model.num_moe_layers - off.cpu_expert_layers
    gpu_part = dataclasses.replace(gpu_cost, moe=dataclasses.replace(gpu_cost.moe, layers=gpu_layers))
    streamed = dataclasses.replace(gpu_cost.moe, layers=off.cpu_expert_layers)
    cpu_part = dataclasses.replace(cpu_cost.moe, layers=off.cpu_expert_layers)
    op_offload = spec.op_offload if isinstance(spec, LlamaCppSpec) else True
    cost = expert_offload_cost(model, fmt, gpu_part, streamed, cpu_part, ubatch, link, op_offload=op_offload)
    split = {
        "n_cpu_moe": off.cpu_expert_layers, "offloaded": f"{off.offloaded}/{model.num_layers + 1} layers",
        "experts_on_cpu": f"{off.cpu_expert_layers}/{model.num_moe_layers} MoE layers",
        "output_layer": "GPU", "split": off.ps(ctx_tokens), "split_reason": off.reason,
        "host": host.id, "host_profile": cpu_profile.id if cpu_profile else None, "op_offload": op_offload,
        "vram_gib": round(vram / GIB, 2), "host_ram_gib": round(off.cpu_weight_bytes / GIB, 2),
    }
    return ResolvedServer(spec.label, engine, policy, cost, None, fmt.name, profile, {**notes, **split})


def kv_on_host_server(spec: LlamaCppSpec, model: ModelSpec, hardware: HardwareSpec, fmt: WeightFormat, kv: float,
                      policy: SlotPolicy, *, ctx_tokens: int, notes: dict[str, object]) -> ResolvedServer:
    """llama.cpp with ``-nkvo``: the weights on the GPU, the KV cache and attention on the host CPU
    (:func:`sim.offload.kv_on_host_cost`); refused where it is not modelled, with the fix."""
    n = model.num_layers
    if isinstance(spec.n_gpu_layers, int) and spec.n_gpu_layers < n + 1 or spec.cpu_moe or spec.n_cpu_moe \
            or spec.override_tensor:
        raise EngineError(
            f"server {spec.label!r}: no_kv_offload is modelled with every layer on the GPU; drop n_gpu_layers / "
            "cpu_moe / n_cpu_moe / override_tensor, or set no_kv_offload: false"
        )
    if model.moe is not None or hardware.count != 1 or hardware.kind == "cpu" or spec.model_draft is not None:
        raise EngineError(
            f"server {spec.label!r}: no_kv_offload is modelled for a dense model on one GPU without a draft model; "
            "set no_kv_offload: false"
        )
    try:
        host = host_of(hardware)
        link = host_link(hardware)
    except CatalogError as err:
        raise EngineError(f"server {spec.label!r}: {err}") from None
    weights = model.weight_bytes(fmt)
    if weights + CUDA_CONTEXT_BYTES > hardware.memory_bytes:
        raise EngineError(
            f"server {spec.label!r}: the {fmt.name} weights ({weights / GIB:.1f} GiB) and the CUDA context do not fit "
            f"{hardware.id} ({hardware.memory_gib:g} GiB) even with the KV cache on the host; quantize further, "
            "or put layers on the CPU (n_gpu_layers) with no_kv_offload: false"
        )
    host_bytes = ctx_tokens * kv
    if host_bytes > host.memory_bytes:
        raise EngineError(
            f"server {spec.label!r}: a {ctx_tokens}-token KV cache needs {host_bytes / GIB:.1f} GiB of host memory, "
            f"{host.id} has {host.memory_gib:g} GiB; lower ctx_size or name a larger host"
        )
    gpu_cost, profile = build_cost(spec, "llama.cpp", model, hardware, fmt, kv, spec.ubatch_size, None)
    cpu_cost, cpu_profile = build_cost(spec, "llama.cpp", model, host, fmt, kv, spec.ubatch_size, None)
    if not isinstance(gpu_cost, RooflineStepCost) or not isinstance(cpu_cost, RooflineStepCost):
        raise EngineError(
            f"server {spec.label!r}: no_kv_offload is priced with the roofline cost only; use cost: {{kind: roofline}}"
        )
    extra = {
        "no_kv_offload": True, "split": "100% GPU (KV cache and attention on the CPU)", "host": host.id,
        "host_profile": cpu_profile.id if cpu_profile else None,
        "vram_gib": round((weights + CUDA_CONTEXT_BYTES) / GIB, 2), "host_ram_gib": round(host_bytes / GIB, 2),
    }
    cost = kv_on_host_cost(model, fmt, gpu_cost, cpu_cost, kv, link)
    return ResolvedServer(spec.label, "llama.cpp", policy, cost, None, fmt.name, profile, {**notes, **extra})
