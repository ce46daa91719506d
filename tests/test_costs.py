"""The roofline step cost's options, checked against its own formula terms."""

from __future__ import annotations

import pytest

from sim import engines
from sim.catalog.specs import get_format, get_hardware, get_model
from sim.costs import RooflineStepCost
from sim.scenario import RooflineCostSpec, SerialDecodeSpec
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
