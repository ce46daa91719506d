"""Device layouts: how an engine spreads one model over the GPUs of a node, and what that costs.

* vLLM (:func:`plan_vllm`): ``tensor_parallel_size`` x ``pipeline_parallel_size`` GPUs per engine,
  ``data_parallel_size`` engines, ``enable_expert_parallel``; vLLM's start-up refusals with its
  own messages; weights and KV per GPU; KV blocks = the minimum over workers.
* llama.cpp / Ollama (:func:`plan_layer_split`): ``--split-mode layer`` (contiguous layers per GPU
  by ``--tensor-split``, each layer's KV on its GPU, the GPUs working one after another) and
  ``row``; Ollama's choice of how many GPUs by version (:func:`ollama_gpus`).
* Mixture-of-experts on any number of GPUs: the routed experts priced from the expected number
  of distinct experts a step touches (:class:`~sim.costs_parallel.MoeLayers`).

A layout turns the one-device :class:`~sim.costs.RooflineStepCost` an engine would use into a
:class:`~sim.costs_parallel.ParallelStepCost` (one GPU's share, plus experts and collectives).
Partial offload to the host CPU (issue 20) will be one more device in :func:`plan_layer_split`'s
list: each device there already carries its own layer count, memory and KV.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files

import yaml

from sim.catalog import HardwareSpec, ModelSpec, WeightFormat
from sim.catalog.interconnects import LinkSpec, collective_fit, link_of
from sim.costs import RooflineStepCost
from sim.costs_parallel import AllReduce, MoeLayers, ParallelStepCost
from sim.parallel import (
    ParallelError,
    get_pp_indices,
    kv_head_replicas,
    kv_heads_per_gpu,
    llama_cpp_layer_split,
    max_rank_load,
)

__all__ = ["GpuShare", "Layout", "moe_layer_overhead_s", "ollama_gpus", "plan_layer_split", "plan_row_split", "plan_single", "plan_vllm", "step_cost"]

GIB = float(1 << 30)
CUSTOM_AR_MAX_BYTES = 8 * (1 << 20)
"""vLLM's custom all-reduce buffer (``custom_all_reduce.py`` ``max_size`` default 8 MiB)."""
CUSTOM_AR_WORLD_SIZES = (2, 4, 6, 8)
"""World sizes vLLM's custom all-reduce supports (``CustomAllreduce._SUPPORTED_WORLD_SIZES``)."""
ACT_BYTES = 2.0
"""Bytes of one activation element between GPUs (bf16/fp16)."""
GGML_ACT_BYTES = 4.0
"""llama.cpp hands f32 activations from one device to the next (inferred, PARALLELISM.md §6.5)."""


@cache
def moe_layer_overhead_s() -> float:
    """Fixed seconds per MoE layer of the fused-MoE kernel, fitted on vLLM's kernel benchmark
    (``sim/catalog/moe_kernels.yaml``, written by ``python -m calibration.moe_kernels``)."""
    doc = yaml.safe_load(files("sim.catalog").joinpath("moe_kernels.yaml").read_text(encoding="utf-8"))
    return float(doc["layer_overhead_us"]) * 1e-6


@dataclass(frozen=True)
class GpuShare:
    """What one GPU of a stage holds: layers [start, stop), weights and KV per token."""

    start: int
    stop: int
    weight_bytes: float
    """Weights resident on this GPU (its shard of the stage, every expert it owns)."""
    kv_bytes_per_token: float
    """KV bytes this GPU stores per cached token."""
    read_bytes: float
    """Weights outside the routed experts read by one pass (the LM head's share included)."""
    matmul_params: float
    """Per-token GEMM weights outside the routed experts (FLOPs / 2), the LM head apart."""
    lm_head_params: float
    moe_layers: int
    first: bool
    last: bool
    expert_bytes: float = 0.0
    """Routed-expert weights resident on this GPU."""


@dataclass(frozen=True)
class Layout:
    """One engine's placement of a model on a node; see the module docstring."""

    engine: str
    tp: int
    pp: int
    dp: int
    ep: bool
    shares: tuple[GpuShare, ...]
    """One per pipeline stage (vLLM) or per device (llama.cpp layer split)."""
    link: LinkSpec | None
    custom_all_reduce: bool = False
    notes: dict[str, object] = field(default_factory=dict)

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp

    def heaviest(self) -> GpuShare:
        """The share that takes longest per pass: most bytes read (its routed experts counted
        whole, as a saturated batch reads them)."""
        return max(self.shares, key=lambda s: (s.read_bytes + s.expert_bytes, s.last))

    def kv_blocks(self, free_bytes_per_gpu: list[float], block_size: int) -> int:
        """Blocks every worker can hold: the minimum over workers (vLLM ``get_kv_cache_configs``)."""
        blocks = [int(free // (share.kv_bytes_per_token * block_size)) for share, free in zip(self.shares, free_bytes_per_gpu)]
        return min(blocks)


def _share(model: ModelSpec, fmt: WeightFormat, kv_elem_bytes: float, start: int, stop: int, *, tp: int,
           expert_shards: int, first: bool, last: bool, kv_fraction: float) -> GpuShare:
    """One GPU's share of layers [start, stop) with TP degree ``tp``; experts split ``expert_shards`` ways."""
    params, matmul, moe_layers = model.stage_params(start, stop)
    body = params * fmt.bits_per_weight / 8 / tp
    experts = moe_layers * (model.moe.num_experts if model.moe else 0) * model.expert_params
    expert_bytes = experts * model.expert_bits(fmt) / 8 / expert_shards
    head = model.num_lm_head_params * fmt.lm_head_bits_per_weight / 8 / tp if last else 0.0
    embed = model.num_embedding_params * fmt.embedding_bits_per_weight / 8 / tp if first and not model.tie_word_embeddings else 0.0
    if first and model.tie_word_embeddings and not last:
        embed = model.num_lm_head_params * fmt.lm_head_bits_per_weight / 8 / tp
    layers_share = (stop - start) / model.num_layers
    kv = model.kv_bytes_per_token(kv_elem_bytes) * layers_share * kv_fraction
    return GpuShare(
        start, stop, body + expert_bytes + head + embed, kv, body + head, matmul / tp,
        model.num_lm_head_params / tp if last else 0.0, moe_layers, first, last, expert_bytes,
    )


def _kv_fraction(model: ModelSpec, tp: int) -> float:
    """Share of a layer's KV one TP rank stores: max(1, kv/TP) heads of kv; MLA: all (replicated)."""
    if model.mla is not None:
        return 1.0
    return kv_heads_per_gpu(model.num_kv_heads, tp) / model.num_kv_heads


def plan_single(model: ModelSpec, fmt: WeightFormat, kv_elem_bytes: float, engine: str) -> Layout:
    """One device holding the whole model (used for MoE models on one GPU)."""
    share = _share(model, fmt, kv_elem_bytes, 0, model.num_layers, tp=1, expert_shards=1, first=True,
                   last=True, kv_fraction=1.0)
    return Layout(engine, 1, 1, 1, False, (share,), None)


def plan_vllm(
    model: ModelSpec, hardware: HardwareSpec, fmt: WeightFormat, kv_elem_bytes: float, *, tp: int, pp: int, dp: int,
    ep: bool, partition: list[int] | None, disable_custom_all_reduce: bool,
) -> Layout:
    """vLLM's placement, or the :class:`ParallelError` vLLM would stop with (its message)."""
    world = tp * pp * dp
    if world > hardware.count:
        raise ParallelError(
            f"World size ({world}) is larger than the number of available GPUs ({hardware.count}) in this node "
            f"(tensor_parallel_size {tp} x pipeline_parallel_size {pp} x data_parallel_size {dp}); "
            f"use hardware: {world}x {hardware.id} or lower the parallel sizes"
        )
    if model.num_heads % tp:
        raise ParallelError(
            f"Total number of attention heads ({model.num_heads}) must be divisible by tensor parallel size ({tp})."
        )
    kv = model.num_kv_heads
    if model.mla is None:
        if tp >= kv and tp % kv:
            raise ParallelError(f"{tp} is not divisible by {kv} (QKVParallelLinear: replicating {kv} KV heads over {tp} ranks)")
        if tp < kv and kv % tp:
            raise ParallelError(f"{kv} is not divisible by {tp} (QKVParallelLinear: splitting {kv} KV heads over {tp} ranks)")
    if ep and model.moe is None:
        raise ParallelError("Number of experts in the model must be greater than 0 when expert parallelism is enabled.")
    if model.moe is not None and not ep and model.moe.expert_intermediate_size % (tp * dp):
        raise ParallelError(
            f"{model.moe.expert_intermediate_size} is not divisible by {tp * dp} (FusedMoE: moe_intermediate_size "
            "sharded over TP x DP ranks without expert parallelism); enable_expert_parallel or change the sizes"
        )
    stages = get_pp_indices(model.num_layers, pp, partition)
    fraction = _kv_fraction(model, tp)
    shares, start = [], 0
    for i, n in enumerate(stages):
        shares.append(_share(model, fmt, kv_elem_bytes, start, start + n, tp=tp, expert_shards=tp * dp,
                             first=i == 0, last=i == pp - 1, kv_fraction=fraction))
        start += n
    link = link_of(hardware) if world > 1 else None
    custom = (
        link is not None and not disable_custom_all_reduce and tp in CUSTOM_AR_WORLD_SIZES and link.p2p
        and (tp == 2 or link.fully_connected)
    )
    notes: dict[str, object] = {
        "tensor_parallel_size": tp, "pipeline_parallel_size": pp, "data_parallel_size": dp,
        "enable_expert_parallel": ep, "pp_layers": stages, "gpus": world,
        "kv_heads_per_gpu": 1 if model.mla else kv_heads_per_gpu(kv, tp),
        "kv_head_replicas": 1 if model.mla else kv_head_replicas(kv, tp),
        "weights_per_gpu_gib": round(max(s.weight_bytes for s in shares) / GIB, 2),
        "interconnect": link.id if link else None,
        "all_reduce": ("custom" if custom else "nccl") if tp > 1 else None,
    }
    return Layout("vllm", tp, pp, dp, ep, tuple(shares), link, custom, notes)


def plan_layer_split(
    model: ModelSpec, hardware: HardwareSpec, fmt: WeightFormat, kv_elem_bytes: float, *, devices: int,
    proportions: list[float] | None, engine: str,
) -> Layout:
    """llama.cpp ``--split-mode layer`` over ``devices`` GPUs of the node (output layer on the last)."""
    if devices > hardware.count:
        raise ParallelError(f"{devices} devices requested, the node has {hardware.count}")
    props = proportions or [1.0] * devices
    if len(props) != devices:
        raise ParallelError(f"tensor_split has {len(props)} entries for {devices} GPUs; give one proportion per GPU")
    counts = llama_cpp_layer_split(model.num_layers, props)
    shares, start = [], 0
    for i, n in enumerate(counts):
        layers = n - 1 if i == devices - 1 else n  # the last device's count includes the output layer
        shares.append(_share(model, fmt, kv_elem_bytes, start, start + layers, tp=1, expert_shards=1,
                             first=i == 0, last=i == devices - 1, kv_fraction=1.0))
        start += layers
    link = link_of(hardware) if devices > 1 else None
    notes: dict[str, object] = {"split_mode": "layer", "layers_per_gpu": counts, "gpus": devices,
                                "interconnect": link.id if link else None}
    return Layout(engine, 1, devices, 1, False, tuple(shares), link, False, notes)


def plan_row_split(
    model: ModelSpec, hardware: HardwareSpec, fmt: WeightFormat, kv_elem_bytes: float, *, devices: int, engine: str,
) -> Layout:
    """llama.cpp ``--split-mode row`` (deprecated): each layer's weight rows split over the GPUs,
    results and the whole KV on the main GPU. Priced like tensor parallelism with NCCL (no
    custom all-reduce) and the main GPU holding every layer's KV; an approximation."""
    if devices > hardware.count:
        raise ParallelError(f"{devices} devices requested, the node has {hardware.count}")
    share = _share(model, fmt, kv_elem_bytes, 0, model.num_layers, tp=devices, expert_shards=devices,
                   first=True, last=True, kv_fraction=1.0)
    link = link_of(hardware)
    notes: dict[str, object] = {"split_mode": "row", "gpus": devices, "interconnect": link.id}
    return Layout(engine + "-row", devices, 1, 1, False, (share,), link, False, notes)


def ollama_gpus(version: tuple[int, ...], need_bytes: float, gpu_bytes: float, count: int, spread: bool) -> tuple[int, str]:
    """How many GPUs Ollama spreads a model over, and why (PARALLELISM.md §3).

    Spread (OLLAMA_SCHED_SPREAD): all. >= 0.30: one GPU if the model needs <= 80 % of one, else
    all of the group. Before: the fewest GPUs that fit (1, 2, ...), all if none do.
    """
    if count <= 1:
        return 1, "one GPU"
    if spread:
        return count, "OLLAMA_SCHED_SPREAD: all GPUs"
    if version >= (0, 30, 0):
        if need_bytes <= 0.8 * gpu_bytes:
            return 1, ">= 0.30: fits in 80 % of one GPU"
        return count, ">= 0.30: all GPUs of the group (llama-server --fit)"
    for n in range(1, count + 1):
        if need_bytes <= n * gpu_bytes:
            return n, f"fewest GPUs that fit ({'<= 0.12.10 pickBestFullFitByLibrary' if version <= (0, 12, 10) else 'assignLayers'})"
    return count, "does not fit: all GPUs"


def _allreduce_group(hardware: HardwareSpec, n: int, custom: bool) -> AllReduce:
    if n <= 1:
        return AllReduce()
    nccl = collective_fit(hardware, n, "nccl")
    if nccl is None:
        raise ParallelError(f"no measured collectives for {hardware.id} over {link_of(hardware).id}")
    fit = collective_fit(hardware, n, "custom") if custom else None
    if fit is None:
        return AllReduce(n, nccl.alpha_s, nccl.busbw_bytes_per_s)
    return AllReduce(n, nccl.alpha_s, nccl.busbw_bytes_per_s, fit.alpha_s, fit.busbw_bytes_per_s, CUSTOM_AR_MAX_BYTES)


def _send(hardware: HardwareSpec) -> tuple[float, float]:
    """(alpha s, bytes/s) of one activation hop between two GPUs of the node."""
    fit = collective_fit(hardware, 2, "nccl", op="send_recv")
    if fit is not None:
        return fit.alpha_s, fit.busbw_bytes_per_s
    ar = collective_fit(hardware, 2, "nccl")
    alpha = ar.alpha_s if ar is not None else 10e-6
    return alpha, link_of(hardware).per_direction_gb_s * 1e9


def step_cost(
    layout: Layout, base: RooflineStepCost, model: ModelSpec, hardware: HardwareSpec, fmt: WeightFormat, *, skew: float
) -> ParallelStepCost:
    """The :class:`ParallelStepCost` of ``layout`` from the one-device roofline ``base`` (same profile)."""
    share = layout.heaviest()
    layers = share.stop - share.start
    attention_split = 1 if layout.engine.endswith("-row") else layout.tp  # row: attention on the main GPU
    stage = dataclasses.replace(
        base,
        weight_bytes_per_pass=share.read_bytes,
        kv_bytes_per_token=share.kv_bytes_per_token,
        layer_matmul_params=share.matmul_params,
        lm_head_params=share.lm_head_params if share.last else 0.0,
        attention_flops_per_pair=model.attention_flops_per_pair * layers / model.num_layers / attention_split,
    )
    moe = None
    if model.moe is not None and share.moe_layers:
        ranks = layout.tp * layout.dp
        ep_ranks = ranks if layout.ep else 1
        shard = 1 if layout.ep else ranks
        moe = MoeLayers(
            layers=share.moe_layers, num_experts=model.moe.num_experts, top_k=model.moe.experts_per_token,
            expert_bytes=model.expert_params * model.expert_bits(fmt) / 8 / shard,
            expert_flops_per_token=2.0 * model.expert_matmul_params / shard,
            bandwidth_bytes_per_s=base.bandwidth_bytes_per_s, flops_per_s=base.gemm_flops_per_s,
            layer_overhead_s=moe_layer_overhead_s(), ep_ranks=ep_ranks,
            max_rank_load=max_rank_load(model.moe.num_experts, model.moe.experts_per_token, ep_ranks, skew),
            skew=skew,
        )
    hidden_bytes = model.hidden_size * ACT_BYTES
    if layout.engine == "vllm" or layout.engine.endswith("-row"):
        send_alpha, send_bw = _send(hardware) if layout.pp > 1 else (0.0, float("inf"))
        return ParallelStepCost(
            stage=stage, stage_layers=layers, hidden_bytes=hidden_bytes,
            tp=_allreduce_group(hardware, layout.tp, layout.custom_all_reduce),
            pp=layout.pp, sends=1 if layout.pp > 1 else 0, send_alpha_s=send_alpha, send_bytes_per_s=send_bw,
            send_bytes_per_token=2 * hidden_bytes,  # IntermediateTensors: hidden_states + residual
            dp=layout.dp, dp_group=_allreduce_group(hardware, layout.tp * layout.dp, False),
            logit_bytes_per_seq=model.vocab_size * 4.0 if layout.tp > 1 else 0.0, moe=moe,
        )
    # llama.cpp layer split: the devices run one after another; priced as the whole model on one
    # device of the node plus a hop per boundary (an MoE model keeps its expert term)
    whole = plan_single(model, fmt, 1.0, layout.engine).shares[0]
    stage = dataclasses.replace(base, weight_bytes_per_pass=whole.read_bytes, layer_matmul_params=whole.matmul_params)
    hops = len(layout.shares) - 1
    send_alpha, send_bw = _send(hardware) if hops else (0.0, float("inf"))
    if moe is not None:
        moe = dataclasses.replace(moe, layers=model.num_moe_layers)
    return ParallelStepCost(
        stage=stage, stage_layers=model.num_layers, hidden_bytes=hidden_bytes, sends=hops,
        overlap_devices=len(layout.shares) if layout.engine == "llama.cpp" else 1,
        send_alpha_s=send_alpha, send_bytes_per_s=send_bw, send_bytes_per_token=model.hidden_size * GGML_ACT_BYTES,
        moe=moe,
    )

