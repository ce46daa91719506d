"""Arithmetic of multi-device serving: layer splits, KV heads per GPU, expected distinct
experts and EP ranks per step, collective times, and vLLM's start-up rules for TP/PP/DP/EP.

Pure functions only (no scheduler, no catalog look-ups): the engines module resolves a server
spec into a device layout with them, and :mod:`sim.costs_parallel` prices one step from it. Every
rule cites its source in ``docs/parallelism.md`` (vLLM, llama.cpp and Ollama read from source).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

__all__ = [
    "ParallelError",
    "allreduce_bus_factor",
    "expected_distinct_experts",
    "expected_distinct_ranks",
    "expert_probabilities",
    "get_pp_indices",
    "kv_head_replicas",
    "kv_heads_per_gpu",
    "llama_cpp_layer_split",
    "max_rank_load",
]


class ParallelError(ValueError):
    """A parallel layout that the engine refuses at start-up; the message is the engine's own."""


def get_pp_indices(num_layers: int, pp_size: int, partition: Sequence[int] | None = None) -> list[int]:
    """Layers per pipeline stage as vLLM's ``get_pp_indices`` splits them.

    ``num_layers // pp_size`` each; the remainder goes one layer each to partitions -2, -3, ...
    (never the last, which holds the final norm and the LM head; with a remainder of
    ``pp_size`` - 1 or more the last one takes what is left). ``partition`` is
    ``VLLM_PP_LAYER_PARTITION`` and must sum to ``num_layers``.
    """
    if pp_size < 1:
        raise ParallelError(f"pipeline_parallel_size must be >= 1, got {pp_size}")
    if partition is not None:
        parts = [int(p) for p in partition]
        if len(parts) != pp_size:
            raise ParallelError(f"Invalid partition string: {','.join(map(str, parts))} has {len(parts)} entries, expected {pp_size}")
        if sum(parts) != num_layers:
            raise ParallelError(f"sum(partitions)={sum(parts)} does not match num_hidden_layers={num_layers}")
        return parts
    per = num_layers // pp_size
    parts = [per] * pp_size
    remaining = num_layers % pp_size
    for i in range(2, remaining + 2):
        parts[-i] += 1
    return parts


def kv_heads_per_gpu(num_kv_heads: int, tp_size: int, *, mla: bool = False) -> int:
    """KV heads each TP rank caches: ``max(1, kv // TP)`` (vLLM ``get_num_kv_heads``); MLA: 1 latent."""
    if mla:
        return 1
    return max(1, num_kv_heads // tp_size)


def kv_head_replicas(num_kv_heads: int, tp_size: int) -> int:
    """How many ranks hold a copy of each KV head (``QKVParallelLinear``): ``TP / kv`` when TP >= kv."""
    return max(1, tp_size // num_kv_heads)


def allreduce_bus_factor(n: int) -> float:
    """nccl-tests bus-bandwidth factor of an all-reduce over ``n`` ranks: 2(n - 1)/n."""
    return 2.0 * (n - 1) / n


def expert_probabilities(num_experts: int, top_k: int, skew: float) -> list[float]:
    """Per-token probability that each expert is chosen, summing to ``top_k``.

    ``skew`` = 0: uniform (``k / E`` each). ``skew`` = s > 0: Zipf weights ``1 / rank**s``
    scaled to sum to ``k``, each capped at 1 (an expert is chosen at most once per token) with
    the excess given to the others in proportion. No measured skew distribution is cited
    (PARALLELISM.md §4.2), so ``skew`` is a what-if parameter.
    """
    if not 1 <= top_k <= num_experts:
        raise ParallelError(f"experts per token ({top_k}) must be between 1 and the number of experts ({num_experts})")
    if skew < 0:
        raise ParallelError(f"expert skew must be >= 0, got {skew}")
    weights = [1.0 / (rank + 1) ** skew for rank in range(num_experts)]
    probs = [0.0] * num_experts
    free = list(range(num_experts))
    mass = float(top_k)
    while free:
        total = sum(weights[e] for e in free)
        capped = [e for e in free if weights[e] * mass / total >= 1.0]
        if not capped:
            for e in free:
                probs[e] = weights[e] * mass / total
            break
        for e in capped:
            probs[e] = 1.0
        mass -= len(capped)
        free = [e for e in free if e not in capped]
    return probs


def expected_distinct_experts(num_experts: int, top_k: int, tokens: float, skew: float = 0.0) -> float:
    """Expected number of distinct experts that ``tokens`` tokens touch in one MoE layer.

    Uniform routing: ``D(B) = E (1 - (1 - k/E)^B)`` (D(1) = k, D -> E, E = k gives E); with
    skew, ``sum_e 1 - (1 - q_e)^B``, which is smaller (Jensen). ``tokens`` = 0 gives 0.
    """
    if tokens <= 0:
        return 0.0
    if skew == 0.0:
        if top_k >= num_experts:
            return float(num_experts)
        return num_experts * (1.0 - (1.0 - top_k / num_experts) ** tokens)
    return sum(1.0 - (1.0 - q) ** tokens for q in expert_probabilities(num_experts, top_k, skew))


def expected_distinct_ranks(num_experts: int, top_k: int, ranks: int) -> float:
    """Expected distinct EP ranks a token's ``k`` experts live on, experts spread evenly over
    ``ranks`` (uniform routing): ``G (1 - C(E - E/G, k) / C(E, k))`` (DeepSeek-V3 EP8: 5.29)."""
    if ranks <= 1:
        return float(ranks)
    per_rank = num_experts // ranks
    miss = math.comb(num_experts - per_rank, top_k) / math.comb(num_experts, top_k)
    return ranks * (1.0 - miss)


def max_rank_load(num_experts: int, top_k: int, ranks: int, skew: float = 0.0) -> float:
    """Largest share of the ``k`` expert slots of a token that one EP rank serves, in units of
    the mean (1.0 with uniform routing); "linear" placement: rank r owns a contiguous block of
    experts, the hottest first under skew."""
    if ranks <= 1:
        return 1.0
    probs = expert_probabilities(num_experts, top_k, skew)
    per = num_experts // ranks
    loads = [sum(probs[r * per:(r + 1) * per]) for r in range(ranks)]
    return max(loads) / (top_k / ranks)


def llama_cpp_layer_split(num_layers: int, proportions: Sequence[float], n_gpu_layers: int | None = None) -> list[int]:
    """Layers (including the output layer, index ``num_layers``) each device gets under
    llama.cpp's ``--split-mode layer``: split points are the cumulative normalised
    ``--tensor-split`` proportions; layer ``il`` goes to ``upper_bound(splits, (il - start) / act)``
    (``src/llama-model.cpp`` ``load_tensors``). Layers below ``start`` stay on the CPU (not
    returned: the count per device is). The last device's count includes the output layer.
    """
    if not proportions or any(p < 0 for p in proportions) or sum(proportions) <= 0:
        raise ParallelError(f"tensor_split {list(proportions)} must be non-negative proportions with a positive sum")
    ngl = num_layers + 1 if n_gpu_layers is None else n_gpu_layers
    start = max(num_layers + 1 - ngl, 0)
    act = min(ngl, num_layers + 1)
    total = sum(proportions)
    splits: list[float] = []
    acc = 0.0
    for p in proportions:
        acc += p
        splits.append(acc / total)
    counts = [0] * len(proportions)
    for il in range(start, num_layers + 1):
        dev = bisect.bisect_right(splits, (il - start) / act)
        counts[min(dev, len(proportions) - 1)] += 1
    return counts
