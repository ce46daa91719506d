"""The entry point: a server spec, a model and hardware -> the resolved server, with its front end
and a note of which cost profile prices it and why."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, assert_never

from sim.catalog import HardwareSpec, ModelSpec
from sim.costs import DecodeLine, RooflineStepCost, StepCost
from sim.costs_offload import OffloadStepCost
from sim.engines.base import EngineError, ResolvedServer, ServerSpecT
from sim.engines.slots import (
    _resolve_llama_cpp,
    _resolve_ollama,
    _resolve_serial,
    _resolve_single_queue,
)
from sim.engines.vllm import _resolve_paged, _resolve_vllm
from sim.frontend import FRONTEND_NONE, select_frontend
from sim.noise import NOISE_NONE, select_noise
from sim.profiles import (
    describe_choice,
    profile_kind,
)
from sim.scenario import (
    LlamaCppSpec,
    OllamaSpec,
    PagedBatchingSpec,
    RooflineCostSpec,
    SerialDecodeSpec,
    SingleQueueSpec,
    VllmSpec,
)
from sim.shapes import BatchShape


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
    resolved = _with_noise(_with_frontend(_resolve(spec, model, hardware), spec, hardware), spec, hardware)
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
            front = select_frontend(resolved.engine, version, hardware.kind, hardware_id=hardware.id)
        else:
            front = FRONTEND_NONE
    except ValueError as err:
        raise EngineError(f"server {spec.label!r}: frontend.profile: {err}") from None
    fitted = front is not FRONTEND_NONE  # a fitted profile applies (its numbers may be zero)
    if fs is not None:
        changes = _set_fields(fs)
        if changes:
            front = replace(front, id=f"{front.id} (overridden: {', '.join(sorted(changes))})", **changes)
    resolved.frontend = front
    if fitted or not front.is_zero:  # say which front end priced the run, a zero profile included
        resolved.notes["frontend"] = front.describe()
    if front.is_zero:
        return resolved
    if not (front.token_s or front.step_s) or resolved.cost is None:
        return resolved
    if isinstance(resolved.cost, OffloadStepCost):  # GPU + host CPU
        resolved.cost = resolved.cost.with_overheads(front.token_s, front.step_s)
    elif isinstance(resolved.cost, RooflineStepCost):
        resolved.cost = replace(
            resolved.cost,
            seq_overhead_s=resolved.cost.seq_overhead_s + front.token_s,
            step_overhead_s=resolved.cost.step_overhead_s + front.step_s,
        )
    else:  # tensor / pipeline parallel, MoE, expert offload, constant or linear costs
        resolved.cost = WithInEngineFrontend(resolved.cost, front.token_s, front.step_s,
                                             _pass_tokens(resolved.cost))
    return resolved


def _set_fields(part: Any) -> dict[str, Any]:
    """The fields a scenario's ``frontend:`` / ``speed_noise:`` sets beside its profile (overrides)."""
    return {k: v for k, v in part.model_dump().items() if k != "profile" and v is not None}


def _with_noise(resolved: ResolvedServer, spec: ServerSpecT, hardware: HardwareSpec) -> ResolvedServer:
    """Attach the machine's speed noise (sim/noise.py): the named profile, else the one fitted on
    this hardware, with the spec's overrides; said in the notes whenever a profile applies."""
    ns = spec.speed_noise
    try:
        noise = select_noise(hardware.id, ns.profile if ns is not None else None)
    except ValueError as err:
        raise EngineError(f"server {spec.label!r}: speed_noise.profile: {err}") from None
    if ns is not None:
        changes = _set_fields(ns)
        if changes:
            named = "set in the scenario" if noise is NOISE_NONE else f"{noise.id} (overridden: {', '.join(sorted(changes))})"
            noise = replace(noise, id=named, **changes)
    if noise is NOISE_NONE:
        return resolved
    if not noise.is_zero and resolved.service is not None:
        if ns is None:  # the hardware's own profile: say so, the run has no passes to slow
            resolved.notes["speed_noise"] = f"{noise.id}: not applied (sampled service times have no passes)"
            return resolved
        raise EngineError(
            f"server {spec.label!r}: speed_noise applies to priced forward passes, and a sampled service "
            "time has none; drop speed_noise (or set speed_noise.profile: none), or give the server a step cost"
        )
    resolved.noise = noise
    resolved.notes["speed_noise"] = noise.describe()
    return resolved


def _pass_tokens(cost: StepCost) -> int:
    """Tokens per physical pass of ``cost`` (its stage's for parallel costs; unbounded if it has none)."""
    stage = getattr(cost, "stage", None)
    return int(getattr(stage if stage is not None else cost, "max_pass_tokens", 1 << 30))


@dataclass(frozen=True)
class WithInEngineFrontend:
    """Any cost with the front end's in-engine part added as a roofline adds it: ``step_s`` per
    physical pass and ``token_s`` per sequence sampled in the pass (decoding or ending its prompt)."""

    inner: StepCost
    token_s: float
    step_s: float
    max_pass_tokens: int = 1 << 30

    def step_time(self, shape: BatchShape) -> float:
        passes = max(1, -(-shape.num_tokens // self.max_pass_tokens))
        seqs = shape.num_decode_seqs + shape.num_prefill_seqs
        return self.inner.step_time(shape) + self.step_s * passes + self.token_s * seqs

    def decode_line(self, num_seqs: int) -> DecodeLine:
        line = self.inner.decode_line(num_seqs)
        passes = max(1, -(-num_seqs // self.max_pass_tokens))
        return DecodeLine(line.c0 + self.step_s * passes + self.token_s * num_seqs, line.a1, line.b1, line.a2, line.b2)


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
