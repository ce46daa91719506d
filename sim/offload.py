"""Partial GPU offload (issue 20): which layers llama.cpp and Ollama put on the GPU, and the rest
on the host CPU (docs/local_servers.md; the rules are LOCAL_SERVERS.md §2-§3's, read from source).

* :func:`place`: llama.cpp's ``-ngl N`` (Ollama's ``num_gpu``): the **last** N layers on the GPU;
  the output layer is the last slot (builds before PR #18148: it joins only at N = L + 1) or the
  first one offloaded (after it); the input embedding always stays on the CPU; each layer's KV on
  that layer's device.
* :func:`fit_layers`: llama-server's ``--fit`` (llama.cpp from :data:`LLAMA_CPP_FIT_BUILD`; Ollama
  from 0.30, which runs llama-server and passes no ``-ngl``): the most layers, filled back to
  front, that leave ``--fit-target`` (1 GiB) free on the GPU.
* :func:`ollama_legacy_layers`: Ollama's memory estimate before 0.30 (§2.1, the ``llama``
  graph formulas), which also gives the sizes ``ollama ps`` prints (:meth:`Offload.ps`).
* :func:`offload_cost`: the step price: the GPU's roofline for its layers plus the host CPU's
  roofline for the others, one after the other, plus the activation hops over the host link;
  passes of >= 32 tokens stream the CPU layers' weights to the GPU (op offload) instead.
* Expert offload of a mixture-of-experts model (:func:`cpu_expert_layers`, :func:`place_experts`,
  :func:`fit_experts`, :func:`expert_offload_cost`): llama.cpp's ``--cpu-moe``, ``--n-cpu-moe N``
  and ``-ot PATTERN=CPU`` keep the routed experts of some layers in host RAM (every other tensor on
  the GPU); ``--fit`` for an MoE model first moves every expert to RAM, then brings the experts of
  the last layers back while they fit (LOCAL_SERVERS.md §3.4).

The host CPU of a GPU is a catalog CPU: the hardware's ``host``, else :data:`DEFAULT_HOSTS` by
the GPU's kind.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sim.catalog import HardwareSpec, ModelSpec, WeightFormat, get_hardware
from sim.catalog.base import CatalogError
from sim.catalog.interconnects import get_link, link_of
from sim.costs import RooflineStepCost, StepCost
from sim.costs_offload import ExpertOffloadStepCost, ExpertTerm, OffloadStepCost

__all__ = [
    "CPU_MOE_PATTERN",
    "DEFAULT_HOSTS",
    "FIT_CTX_TOKENS",
    "FIT_TARGET_BYTES",
    "LLAMA_CPP_FIT_BUILD",
    "LLAMA_CPP_OUTPUT_FIRST_BUILD",
    "OLLAMA_FIT_VERSION",
    "Offload",
    "cpu_expert_layers",
    "expert_offload_cost",
    "fit_context",
    "fit_experts",
    "fit_layers",
    "host_link",
    "host_of",
    "kv_on_host_cost",
    "offload_cost",
    "ollama_legacy_layers",
    "place",
    "place_experts",
]

GIB = float(1 << 30)
MIB = float(1 << 20)
FIT_TARGET_BYTES = 1024 * MIB
"""``--fit-target``: memory llama-server's ``--fit`` leaves free per device (default 1024 MiB)."""
LLAMA_CPP_FIT_BUILD = 7400
"""First llama.cpp build whose default is ``-ngl auto`` with ``--fit on`` (PR #16653, merged
2025-12). ASSUMED build number: the reference gives the month, not the build."""
LLAMA_CPP_OUTPUT_FIRST_BUILD = 7500
"""First build in which the output layer is the first one offloaded (PR #18148, 2025-12).
ASSUMED build number, as above."""
OLLAMA_FIT_VERSION = (0, 30, 0)
"""Ollama runs upstream llama-server and lets its ``--fit`` choose the split from 0.30."""
OLLAMA_MIN_GPU_BYTES = 457 * MIB
"""Ollama's minimum memory per CUDA/ROCm GPU in its estimate (§2.1)."""
OLLAMA_BATCH = 512
HOP_ALPHA_S = 10e-6
"""Latency of one activation copy between host and GPU (ASSUMED, as the layouts' hop fallback)."""
GGML_ACT_BYTES = 4.0
"""llama.cpp hands f32 activations from one device to the next."""
DEFAULT_HOSTS = {"consumer_gpu": "cpu-generic-16c", "datacenter_gpu": "cpu-generic-16c",
                 "apple_silicon": "cpu-generic-16c", "cpu": "cpu-generic-16c"}
"""Host CPU by GPU kind when the hardware names no ``host``: the catalog's 16-core desktop
(Ryzen 9 7950X class, dual-channel DDR5-5600). An assumption for datacenter GPUs, whose hosts
have far more memory bandwidth: name the host there."""


@dataclass(frozen=True)
class Offload:
    """One model split between a GPU and the host CPU (see the module docstring)."""

    num_layers: int
    gpu_layers: int
    """Repeating layers on the GPU: the last ``gpu_layers`` of them."""
    output_on_gpu: bool
    gpu_weight_bytes: float
    """Weights on the GPU (its layers, the output layer if there)."""
    cpu_weight_bytes: float
    """Weights in host memory (CPU layers, the input embedding, the output layer if there)."""
    gpu_read_bytes: float
    """Weights the GPU reads per pass (an MoE model's GPU-resident experts counted whole)."""
    cpu_read_bytes: float
    """Weights the CPU reads per pass (not the embedding table: a pass reads only its rows); with
    expert offload, the CPU-resident experts, of which a pass reads those its tokens route to."""
    gpu_matmul_params: float
    cpu_matmul_params: float
    gpu_kv_per_token: float
    cpu_kv_per_token: float
    reason: str
    """How the split was chosen (``-ngl 40``, ``--fit``, Ollama's estimate)."""
    cpu_expert_layers: int = 0
    """MoE layers whose routed experts are in host RAM (expert offload; their other tensors on the GPU)."""

    @property
    def offloaded(self) -> int:
        """Layers on the GPU as llama.cpp counts them ("offloaded 41/81 layers": the output is one)."""
        return self.gpu_layers + int(self.output_on_gpu)

    @property
    def full(self) -> bool:
        """Every tensor but the input embedding on the GPU: today's single-GPU server."""
        return self.offloaded == self.num_layers + 1 and self.cpu_expert_layers == 0

    @property
    def hops(self) -> tuple[int, int]:
        """Host/GPU boundaries a pass crosses: (with every token: into the first GPU layer, the
        embedding being on the CPU; with the sampled rows only: between the last repeating layer
        and the output layer when they are on different devices, llama.cpp having kept only the
        rows that need logits in the last layer, ``inp_out_ids``)."""
        return int(self.gpu_layers > 0), int(self.gpu_layers > 0 and not self.output_on_gpu) + int(
            self.gpu_layers == 0 and self.output_on_gpu)

    def ps(self, ctx_tokens: int) -> str:
        """The PROCESSOR column of ``ollama ps``: Size = weights + KV, SizeVRAM = their GPU part."""
        vram = self.gpu_weight_bytes + ctx_tokens * self.gpu_kv_per_token
        size = vram + self.cpu_weight_bytes + ctx_tokens * self.cpu_kv_per_token
        if vram >= size:
            return "100% GPU"
        if vram <= 0:
            return "100% CPU"
        cpu = round(100 * (size - vram) / size)
        return f"{cpu}%/{100 - cpu}% CPU/GPU"


def _head_bytes(model: ModelSpec, fmt: WeightFormat) -> float:
    return model.num_lm_head_params * fmt.lm_head_bits_per_weight / 8


def _embed_bytes(model: ModelSpec, fmt: WeightFormat) -> float:
    return model.num_embedding_params * fmt.embedding_bits_per_weight / 8


def _layer_bytes(model: ModelSpec, fmt: WeightFormat, start: int, stop: int) -> tuple[float, float]:
    """(weight bytes, GEMM params) of repeating layers [start, stop)."""
    params, matmul, _ = model.stage_params(start, stop)
    return params * fmt.bits_per_weight / 8, matmul


def place(model: ModelSpec, fmt: WeightFormat, kv_per_token: float, ngl: int, *, output_first: bool,
          reason: str) -> Offload:
    """llama.cpp's placement for ``-ngl ngl`` (``llama_model::load_tensors``, LOCAL_SERVERS.md §3.1)."""
    if model.moe is not None:
        raise CatalogError(
            f"putting whole layers of the mixture-of-experts model {model.id!r} on the CPU is not modelled; keep "
            "every layer on the GPU (n_gpu_layers / num_gpu unset) and move its experts to the CPU instead "
            "(llama.cpp cpu_moe: true, n_cpu_moe: N or override_tensor; --fit and Ollama >= 0.30 do so by default)"
        )
    n = model.num_layers
    act = min(max(ngl, 0), n + 1)
    start = max(n + 1 - act, 0) if output_first else max(n - act, 0)
    on_gpu = [start <= il < start + act for il in range(n + 1)]
    g = sum(on_gpu[:n])
    out = on_gpu[n]
    gpu_body, gpu_mm = _layer_bytes(model, fmt, n - g, n)
    cpu_body, cpu_mm = _layer_bytes(model, fmt, 0, n - g)
    head = _head_bytes(model, fmt)
    kv_layer = kv_per_token / n
    return Offload(
        num_layers=n, gpu_layers=g, output_on_gpu=out,
        gpu_weight_bytes=gpu_body + head * out, cpu_weight_bytes=cpu_body + head * (not out) + _embed_bytes(model, fmt),
        gpu_read_bytes=gpu_body + head * out, cpu_read_bytes=cpu_body + head * (not out),
        gpu_matmul_params=gpu_mm, cpu_matmul_params=cpu_mm,
        gpu_kv_per_token=kv_layer * g, cpu_kv_per_token=kv_layer * (n - g), reason=reason,
    )


def fit_layers(model: ModelSpec, fmt: WeightFormat, kv_per_token: float, ctx_tokens: int, gpu_bytes: float,
               context_bytes: float, *, output_first: bool) -> int:
    """``--fit``: the largest ``-ngl`` whose GPU part (weights, its layers' KV for ``ctx_tokens``,
    the engine's context ``context_bytes``) leaves :data:`FIT_TARGET_BYTES` free (§3.4 step 3;
    the context was set, so step 2 does not shrink it)."""
    for ngl in range(model.num_layers + 1, -1, -1):
        off = place(model, fmt, kv_per_token, ngl, output_first=output_first, reason="")
        if off.offloaded == 0:
            return 0
        need = off.gpu_weight_bytes + ctx_tokens * off.gpu_kv_per_token + context_bytes
        if need + FIT_TARGET_BYTES <= gpu_bytes:
            return ngl
    return 0


FIT_CTX_TOKENS = 4096
"""``--fit-ctx``: the smallest context ``--fit`` shrinks an unset context to (§3.4)."""


def fit_context(model: ModelSpec, fmt: WeightFormat, kv_per_token: float, gpu_bytes: float, context_bytes: float,
                streams: int) -> int:
    """``--fit`` step 2 (context not set): the model's training context, shrunk so that the weights,
    its KV and the engine's context ``context_bytes`` leave :data:`FIT_TARGET_BYTES` free, a
    multiple of 256 x ``streams``, not below :data:`FIT_CTX_TOKENS` (where the layers, step 3, take
    over). Computed with every layer on the GPU (the split a user's ``-ngl`` chooses is not used)."""
    train = model.max_position_embeddings
    room = gpu_bytes - model.weight_bytes(fmt) - context_bytes - FIT_TARGET_BYTES
    if train * kv_per_token <= room:
        return train
    step = 256 * max(1, streams)
    return max(FIT_CTX_TOKENS, int(room / kv_per_token // step) * step) if room > 0 else FIT_CTX_TOKENS


def ollama_legacy_layers(model: ModelSpec, fmt: WeightFormat, kv_per_token: float, n_ctx: int, free_bytes: float,
                         num_gpu: int = -1, overhead_bytes: float = 0.0) -> int:
    """Ollama's layer count before 0.30 (``EstimateGPULayers``, LOCAL_SERVERS.md §2.1, the
    ``llama`` graph formulas): fill from the last layer down, one layer kept as a buffer."""
    n = model.num_layers
    e, v, h, hkv = model.hidden_size, model.vocab_size, model.num_heads, model.num_kv_heads
    d_head = e // h
    b = min(n_ctx, OLLAMA_BATCH)
    g_full = max(4 * b * (1 + 4 * e + n_ctx * (1 + h)), 4 * b * (e + v))
    g_part = 4 * b * e + max(
        4 * b * (1 + e + max(n_ctx, e)) + e * e * 9 / 16 + 4 * n_ctx * (b * h + d_head * hkv),
        4 * b * (e + v) + e * v * 105 / 128,
    )
    graph = max(g_full, g_part)
    w_layer, _ = _layer_bytes(model, fmt, 0, 1)
    kv_layer = kv_per_token / n * n_ctx
    layer = w_layer + kv_layer
    if free_bytes < overhead_bytes + graph + OLLAMA_MIN_GPU_BYTES + 2 * layer:
        return 0
    alloc = OLLAMA_MIN_GPU_BYTES + layer
    count = 0
    for _ in range(n):
        if (0 <= num_gpu <= count) or free_bytes <= overhead_bytes + alloc + graph + layer:
            break
        alloc += layer
        count += 1
    out = _head_bytes(model, fmt)
    if count == n and (num_gpu < 0 or count < num_gpu) and free_bytes > overhead_bytes + alloc + graph + out:
        count += 1
    return count


def host_of(hardware: HardwareSpec) -> HardwareSpec:
    """The host CPU of ``hardware``: its ``host`` if named, else :data:`DEFAULT_HOSTS` by kind."""
    host_id = getattr(hardware, "host", None) or DEFAULT_HOSTS[hardware.kind]
    host = get_hardware(host_id)
    if host.kind != "cpu":
        raise CatalogError(f"hardware {hardware.id!r}: host {host_id!r} is a {host.kind}, not a cpu; name a catalog cpu")
    return host


def host_link(hardware: HardwareSpec) -> float:
    """Bytes/s of the GPU's host link (its PCIe generation; PCIe 5 where the node link is NVLink)."""
    try:
        link = link_of(hardware)
    except CatalogError:
        link = get_link("pcie5")
    if not link.id.startswith("pcie"):
        link = get_link("pcie5")
    return link.per_direction_gb_s * 1e9


def _part(base: RooflineStepCost, model: ModelSpec, read: float, kv: float, matmul: float, head: bool,
          layers: int, share: float) -> RooflineStepCost:
    """``base`` (a whole-model roofline) restricted to some layers; overheads scaled by ``share``."""
    return dataclasses.replace(
        base, weight_bytes_per_pass=read, kv_bytes_per_token=kv, layer_matmul_params=matmul,
        lm_head_params=model.num_lm_head_params if head else 0.0,
        attention_flops_per_pair=model.attention_flops_per_pair * layers / model.num_layers,
        step_overhead_s=base.step_overhead_s * share, seq_overhead_s=base.seq_overhead_s * share,
    )


def offload_cost(off: Offload, model: ModelSpec, gpu: RooflineStepCost, cpu: RooflineStepCost,
                 link_bytes_per_s: float, *, op_offload: bool) -> RooflineStepCost | OffloadStepCost:
    """The step price of ``off``: ``gpu`` itself when every layer is on the GPU (bit for bit
    today's cost); ``cpu`` itself for a CPU-only run without op offload; else the sum."""
    if off.full:
        return gpu
    n = model.num_layers
    share = off.offloaded / (n + 1)
    cpu_layers = n - off.gpu_layers
    if off.offloaded == 0:
        cpu_part = cpu
    else:
        cpu_part = _part(cpu, model, off.cpu_read_bytes, off.cpu_kv_per_token, off.cpu_matmul_params,
                         not off.output_on_gpu, cpu_layers, 1.0 - share)
    if not op_offload and off.offloaded == 0:
        return cpu
    gpu_part = None
    if off.offloaded:
        gpu_part = _part(gpu, model, off.gpu_read_bytes, off.gpu_kv_per_token, off.gpu_matmul_params,
                         off.output_on_gpu, off.gpu_layers, share)
    stream = None
    if op_offload:
        stream = _part(gpu, model, off.cpu_read_bytes, off.cpu_kv_per_token, off.cpu_matmul_params,
                       not off.output_on_gpu, cpu_layers, 1.0 - share)
    return OffloadStepCost(
        gpu=gpu_part, cpu=cpu_part, stream=stream, stream_bytes_per_pass=off.cpu_read_bytes,
        hops=off.hops[0], output_hops=off.hops[1], hop_alpha_s=HOP_ALPHA_S, hop_bytes_per_token=model.hidden_size * GGML_ACT_BYTES,
        link_bytes_per_s=link_bytes_per_s,
    )



def kv_on_host_cost(model: ModelSpec, fmt: WeightFormat, gpu: RooflineStepCost, cpu: RooflineStepCost,
                    kv_per_token: float, link_bytes_per_s: float) -> OffloadStepCost:
    """llama.cpp ``-nkvo`` (``offload_kqv = false``): every weight on the GPU, the KV cache in host
    memory and the attention (KQ, KQV) on the host CPU, layer by layer. A pass costs the GPU's
    weights (no attention), the CPU's attention over the KV, and two activation hops per layer
    (queries and new K/V out, the attention output back; each counted as one hidden vector)."""
    n = model.num_layers
    body, matmul = _layer_bytes(model, fmt, 0, n)
    head = _head_bytes(model, fmt)
    gpu_part = _part(gpu, model, body + head, 0.0, matmul, True, 0, 1.0)
    cpu_part = _part(cpu, model, 0.0, kv_per_token, 0.0, False, n, 0.0)
    return OffloadStepCost(
        gpu=gpu_part, cpu=cpu_part, stream=None, stream_bytes_per_pass=0.0, hops=2 * n, output_hops=0,
        hop_alpha_s=HOP_ALPHA_S, hop_bytes_per_token=model.hidden_size * GGML_ACT_BYTES, link_bytes_per_s=link_bytes_per_s,
    )

# ---------------------------------------------------------------------------------------------
# Expert offload of mixture-of-experts models (--cpu-moe, --n-cpu-moe, -ot, --fit)
# ---------------------------------------------------------------------------------------------
CPU_MOE_PATTERN = r"\.ffn_(up|down|gate)_exps"
"""The override ``--cpu-moe`` adds (llama.cpp ``common/arg.cpp``); ``--n-cpu-moe N`` adds
``blk\\.i\\.ffn_(up|down|gate)_exps`` for i < N."""
EXPERT_TENSORS = ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps")
"""A layer's routed-expert tensors in a GGUF file (all experts of the layer in one 3-D tensor each)."""
_LAYER_TENSORS = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "attn_q_norm", "attn_k_norm",
                  "ffn_norm", "ffn_gate_inp", "ffn_gate", "ffn_up", "ffn_down",
                  "ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp", "ffn_gate_inp_shexp")
"""The other tensors llama.cpp names in a layer (attention, norms, router, dense and shared FFN)."""
_GLOBAL_TENSORS = ("token_embd.weight", "output_norm.weight", "output.weight")


def _ot_layers(model: ModelSpec, pattern: str, where: str) -> set[int]:
    """MoE layers whose expert tensors ``-ot`` ``pattern`` (``REGEX=CPU``) puts on the CPU, or the
    :class:`CatalogError` naming what it matches that is not modelled (tensor names as llama.cpp's,
    matched with ``regex_search``)."""
    fix = (r"use patterns that select whole expert tensors, e.g. 'blk\.([0-9]|1[0-9])\.ffn_.*_exps=CPU' "
           "(layers 0-19), or cpu_moe / n_cpu_moe")
    regex, sep, buft = pattern.rpartition("=")
    if not sep or not regex:
        raise CatalogError(f"{where} {pattern!r} is not PATTERN=BUFFER_TYPE; {fix}")
    if buft != "CPU":
        raise CatalogError(f"{where} {pattern!r}: only '=CPU' is modelled (not {buft!r}); {fix}")
    try:
        compiled = re.compile(regex)
    except re.error as err:
        raise CatalogError(f"{where} {pattern!r}: {regex!r} is not a regular expression ({err}); {fix}") from None
    dense = set(model.moe.dense_layers) if model.moe else set()
    names = [*_GLOBAL_TENSORS, *(f"blk.{i}.{t}.weight" for i in range(model.num_layers) for t in _LAYER_TENSORS)]
    other = [name for name in names if compiled.search(name)]
    if other:
        raise CatalogError(f"{where} {pattern!r} puts {other[0]} (not a routed expert) on the CPU, which is not modelled; {fix}")
    layers = set()
    for i in range(model.num_layers):
        hit = [t for t in EXPERT_TENSORS if compiled.search(f"blk.{i}.{t}.weight")]
        if hit and i not in dense:
            if len(hit) < len(EXPERT_TENSORS):
                raise CatalogError(f"{where} {pattern!r} puts only {', '.join(hit)} of layer {i} on the CPU: a layer's "
                                   f"experts are modelled whole; match all three ({', '.join(EXPERT_TENSORS)}), e.g. ffn_.*_exps")
            layers.add(i)
    if not layers:
        raise CatalogError(f"{where} {pattern!r} matches no expert tensor of {model.id} ({model.num_layers} layers); {fix}")
    return layers


def cpu_expert_layers(model: ModelSpec, *, cpu_moe: bool, n_cpu_moe: int | None, override: Sequence[str] | None,
                      names: tuple[str, str, str] = ("cpu_moe", "n_cpu_moe", "override_tensor")) -> frozenset[int]:
    """The MoE layers whose routed experts llama.cpp keeps in host RAM for these options (their
    union, as llama.cpp appends them all to its overrides); empty when none is given."""
    given = [name for name, v in zip(names, (cpu_moe, n_cpu_moe is not None, bool(override)), strict=True) if v]
    if not given:
        return frozenset()
    if model.moe is None:
        raise CatalogError(f"{', '.join(given)}: these options move the routed experts of a mixture-of-experts model to the CPU; "
                           f"{model.id} is dense: remove {' and '.join(given)} (n_gpu_layers splits a dense model)")
    n = model.num_layers
    if n_cpu_moe is not None and n_cpu_moe > n:
        raise CatalogError(f"{names[1]}={n_cpu_moe} but {model.id} has {n} layers; use {names[1]} <= {n} "
                           f"({n}: every layer's experts, as {names[0]}: true)")
    dense = set(model.moe.dense_layers)
    layers = set(range(n)) if cpu_moe else set(range(n_cpu_moe or 0))
    for j, pattern in enumerate(override or ()):
        layers |= _ot_layers(model, pattern, f"{names[2]}[{j}]")
    return frozenset(layers - dense)


def place_experts(model: ModelSpec, fmt: WeightFormat, kv_per_token: float, layers: int, *, reason: str) -> Offload:
    """Every layer and the output on the GPU (each layer's KV there), the routed experts of
    ``layers`` MoE layers and the input embedding in host RAM."""
    assert model.moe is not None
    experts = layers * model.moe.num_experts * model.expert_params * model.expert_bits(fmt) / 8
    embed = _embed_bytes(model, fmt)
    body, matmul, _ = model.stage_params(0, model.num_layers)
    gpu_experts = (model.num_moe_layers - layers) * model.moe.num_experts * model.expert_params * model.expert_bits(fmt) / 8
    head = _head_bytes(model, fmt)
    return Offload(
        num_layers=model.num_layers, gpu_layers=model.num_layers, output_on_gpu=True,
        gpu_weight_bytes=model.weight_bytes(fmt) - experts - embed, cpu_weight_bytes=experts + embed,
        gpu_read_bytes=body * fmt.bits_per_weight / 8 + head + gpu_experts, cpu_read_bytes=experts,
        gpu_matmul_params=matmul, cpu_matmul_params=0.0,
        gpu_kv_per_token=kv_per_token, cpu_kv_per_token=0.0, reason=reason, cpu_expert_layers=layers,
    )


def fit_experts(model: ModelSpec, fmt: WeightFormat, kv_per_token: float, ctx_tokens: int, gpu_bytes: float,
                context_bytes: float) -> int | None:
    """``--fit`` for an MoE model (§3.4 step 3): every expert in RAM first, then the experts of the
    last layers back to the GPU while :data:`FIT_TARGET_BYTES` stay free. Returns N, the experts of
    the first N layers left on the CPU (the layer at the boundary, which llama.cpp lets overflow
    partially, down then gate then up, is put wholly on the CPU here); None when not even every
    expert on the CPU leaves the target free."""
    for first in range(model.num_layers + 1):
        layers = sum(1 for i in range(first) if model.moe is None or i not in model.moe.dense_layers)
        off = place_experts(model, fmt, kv_per_token, layers, reason="")
        if off.gpu_weight_bytes + ctx_tokens * off.gpu_kv_per_token + context_bytes + FIT_TARGET_BYTES <= gpu_bytes:
            return first
    return None


def expert_offload_cost(model: ModelSpec, fmt: WeightFormat, gpu: StepCost, gpu_experts: ExpertTerm,
                        cpu_experts: ExpertTerm, max_pass_tokens: int, link_bytes_per_s: float, *,
                        op_offload: bool) -> ExpertOffloadStepCost:
    """The step price of an expert offload: ``gpu`` (the model on the GPU with the experts of its
    GPU-resident layers only), plus ``cpu_experts`` (the experts of the CPU-expert layers at the
    host CPU's roofline) with two activation hops per such layer, or, for passes
    of >= 32 tokens with op offload, ``gpu_experts`` (the same layers priced on the GPU) plus the
    copy of the experts the pass routes to."""
    assert model.moe is not None
    return ExpertOffloadStepCost(
        gpu=gpu, cpu_experts=cpu_experts, stream_experts=gpu_experts if op_offload else None,
        expert_bytes=model.expert_params * model.expert_bits(fmt) / 8,
        max_pass_tokens=max_pass_tokens, hop_alpha_s=HOP_ALPHA_S,
        hop_bytes_per_token=model.hidden_size * GGML_ACT_BYTES, link_bytes_per_s=link_bytes_per_s,
    )
