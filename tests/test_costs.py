"""The roofline step cost: its two forms and its options, checked against their formula terms."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sim import engines
from sim.catalog import get_format, get_hardware, get_model
from sim.costs import RooflineStepCost
from sim.scenario import PagedBatchingSpec, RooflineCostSpec, SerialDecodeSpec
from sim.shapes import BatchShape


def _cost(logits_all: bool) -> RooflineStepCost:
    model, hw, fmt = get_model("smollm2-135m"), get_hardware("epyc-zen5-2c-vm"), get_format("f16")
    spec = SerialDecodeSpec(name="s", logits_all=logits_all, cost=RooflineCostSpec())
    cost, _ = engines.build_cost(spec, "llama.cpp", model, hw, fmt, model.kv_bytes_per_token(2.0), 512)
    assert isinstance(cost, RooflineStepCost)
    return cost


@pytest.mark.parametrize("prompt", [2, 64, 512])
def test_logits_all_adds_the_lm_head_of_every_prompt_token_but_the_last(prompt: int) -> None:
    plain, every = _cost(False), _cost(True)
    shape = BatchShape(prompt, 1, 0, prompt * (prompt + 1) / 2)
    extra = 2.0 * plain.lm_head_params * (prompt - 1) / plain.gemm_flops_per_s
    # The formula's compute term, with and without the extra LM-head rows; the pass costs the
    # larger of memory and compute, so the difference is at most `extra` and exactly it when
    # both passes are compute-bound.
    assert every.step_time(shape) - plain.step_time(shape) <= extra * (1 + 1e-12)
    if prompt >= 64:  # a CPU prompt pass of 64+ tokens is compute-bound
        assert every.step_time(shape) - plain.step_time(shape) == pytest.approx(extra, rel=1e-9)


def test_logits_all_leaves_decode_passes_alone() -> None:
    plain, every = _cost(False), _cost(True)
    for shape in (BatchShape(num_decode_seqs=1, num_context_tokens=100),
                  BatchShape(num_decode_seqs=4, num_context_tokens=900)):
        assert every.step_time(shape) == plain.step_time(shape)
    assert every.decode_line(3) == plain.decode_line(3)


def _gpu_cost(per_kernel: bool | None = None) -> RooflineStepCost:
    """vLLM's roofline for Llama-3.1-8B on an H100 (its fitted profile), in the form asked for."""
    model, hw, fmt = get_model("llama-3.1-8b"), get_hardware("h100-sxm"), get_format("bf16")
    cost, _ = engines.build_cost(PagedBatchingSpec(name="p"), "vllm", model, hw, fmt, model.kv_bytes_per_token(2.0), 1 << 30)
    assert isinstance(cost, RooflineStepCost)
    return cost if per_kernel is None else replace(cost, per_kernel=per_kernel)


def _terms(cost: RooflineStepCost, s: BatchShape) -> tuple[float, float, float, float]:
    """(GEMM memory, GEMM compute, attention memory, attention compute) of one pass, from the
    docstring's definitions (a single physical pass, LM head on the sampled sequences)."""
    tokens, seqs = s.num_prefill_tokens + s.num_decode_seqs, s.num_prefill_seqs + s.num_decode_seqs
    kv_tokens = s.num_context_tokens + s.prefill_context_tokens + tokens
    return (
        cost.weight_bytes_per_pass / cost.bandwidth_bytes_per_s,
        2 * (cost.layer_matmul_params * tokens + cost.lm_head_params * seqs) / cost.gemm_flops_per_s,
        cost.kv_bytes_per_token * kv_tokens / cost.bandwidth_bytes_per_s,
        cost.attention_flops_per_pair * (s.num_context_tokens + s.prefill_attention_pairs) / cost.attention_flops_per_s,
    )


SHAPES = [
    BatchShape(num_decode_seqs=1, num_context_tokens=300),  # small decode: all memory-bound
    BatchShape(num_decode_seqs=128, num_context_tokens=128 * 4000),
    BatchShape(512, 1, 0, 512 * 513 / 2, 64, 64 * 3000),  # a mixed pass of chunked prefill
    BatchShape(4096, 1, 0, 4096 * 4097 / 2),  # a long prompt: compute-bound
]


@pytest.mark.parametrize("shape", SHAPES)
def test_the_two_roofline_forms_follow_their_formulas(shape: BatchShape) -> None:
    gpu = _gpu_cost(per_kernel=True)
    gm, gc, am, ac = _terms(gpu, shape)
    overheads = gpu.step_overhead_s + gpu.seq_overhead_s * (shape.num_prefill_seqs + shape.num_decode_seqs)
    assert gpu.step_time(shape) == pytest.approx(overheads + max(gm, gc) + max(am, ac), rel=1e-12)
    whole = _gpu_cost(per_kernel=False)
    assert whole.step_time(shape) == pytest.approx(overheads + max(gm + am, gc + ac), rel=1e-12)
    assert gpu.step_time(shape) >= whole.step_time(shape)  # a sum of maxima is never below the max of sums


def test_per_kernel_pricing_matters_when_gemms_and_attention_are_bound_differently() -> None:
    gpu, whole = _gpu_cost(per_kernel=True), _gpu_cost(per_kernel=False)
    mixed = SHAPES[2]
    gm, gc, am, ac = _terms(gpu, mixed)
    assert gc > gm and am > ac  # compute-bound GEMMs beside KV-bound decode attention
    assert gpu.step_time(mixed) - whole.step_time(mixed) == pytest.approx(min(gc - gm, am - ac), rel=1e-9)
    small = SHAPES[0]
    assert gpu.step_time(small) == pytest.approx(whole.step_time(small), rel=1e-12)  # both memory-bound


@pytest.mark.parametrize("per_kernel", [True, False])
@pytest.mark.parametrize("num_seqs", [1, 8, 256, 1024])
def test_the_decode_line_is_the_decode_pass_priced_in_closed_form(per_kernel: bool, num_seqs: int) -> None:
    cost = _gpu_cost(per_kernel)
    line = cost.decode_line(num_seqs)
    for context in (0, 1000 * num_seqs, 30_000 * num_seqs):
        shape = BatchShape(num_decode_seqs=num_seqs, num_context_tokens=context)
        assert line.at(context) == pytest.approx(cost.step_time(shape), rel=1e-12)


def test_gpus_are_priced_per_kernel_and_cpus_over_the_whole_pass() -> None:
    assert _gpu_cost().per_kernel is True
    assert _cost(False).per_kernel is False  # epyc-zen5-2c-vm, a CPU
