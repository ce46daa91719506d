"""Many GPUs per server and mixture-of-experts, tied to the single device and to closed forms.

TP = PP = 1 reproduces one device exactly; an all-reduce over one GPU costs nothing and tends to
its latency as bandwidth grows; an MoE with E = k experts is the dense model of the same width;
D(1) = k, D(B) -> E, monotone; get_pp_indices gives [15, 15, 16, 15] for 61 layers over 4; KV per
GPU never falls below one head; every vLLM start-up refusal fires with its message.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from pathlib import Path

import pytest

from sim.catalog import CatalogError, get_model, model_from_hf_config, resolve_hardware
from sim.catalog.interconnects import collective_fit, link_of
from sim.costs import RooflineStepCost
from sim.costs_parallel import AllReduce, ParallelStepCost
from sim.engines import EngineError
from sim.engines import resolve_server as _resolve_server
from sim.layouts import moe_layer_overhead_s
from sim.parallel import (
    expected_distinct_experts,
    expected_distinct_ranks,
    get_pp_indices,
    kv_heads_per_gpu,
    llama_cpp_layer_split,
    max_rank_load,
)
from sim.scenario import ScenarioError
from sim.scenario.costs import FrontendSpec
from sim.scenario.servers import LlamaCppSpec, OllamaSpec, VllmSpec
from sim.shapes import BatchShape

CONFIGS = Path(__file__).parent / "data" / "model_configs"
DECODES = [BatchShape(num_decode_seqs=b, num_context_tokens=b * c) for b in (1, 7, 64) for c in (16, 900)]


def resolve_server(spec, model, hardware):  # noqa: ANN001, ANN201 - the engines' resolver, without a front end
    """The engines' resolver with no front end unless the test names one: its in-engine part would
    wrap the cost objects these tests examine."""
    if spec.frontend is None:
        spec = spec.model_copy(update={"frontend": FrontendSpec(profile="none")})
    return _resolve_server(spec, model, hardware)


# ---------------------------------------------------------------- degenerate layouts = one device
@pytest.mark.parametrize("hardware", ["h100-sxm", "8x h100-sxm"])
def test_tp1_pp1_is_the_single_device_cost_itself(hardware: str) -> None:
    model = get_model("llama-3.1-8b")
    one = resolve_server(VllmSpec(max_model_len=8192), model, resolve_hardware("h100-sxm"))
    explicit = resolve_server(
        VllmSpec(max_model_len=8192, tensor_parallel_size=1, pipeline_parallel_size=1), model, resolve_hardware(hardware)
    )
    assert isinstance(explicit.cost, RooflineStepCost)
    assert explicit.cost == one.cost
    assert explicit.policy == one.policy


def test_a_parallel_wrapper_of_one_gpu_adds_nothing() -> None:
    base = resolve_server(VllmSpec(max_model_len=8192), get_model("llama-3.1-8b"), resolve_hardware("h100-sxm")).cost
    assert isinstance(base, RooflineStepCost)
    wrapped = ParallelStepCost(stage=base, stage_layers=32, hidden_bytes=8192.0)
    for shape in DECODES:
        assert wrapped.step_time(shape) == base.decode_line(shape.num_decode_seqs).at(shape.num_context_tokens)
    prefill = BatchShape(num_prefill_tokens=300, num_prefill_seqs=2, prefill_attention_pairs=300 * 75.0)
    assert wrapped.step_time(prefill) == base.step_time(prefill)


def test_llama_cpp_on_one_gpu_of_a_node_is_the_single_device() -> None:
    model = get_model("llama-3.1-8b")
    one = resolve_server(LlamaCppSpec(ctx_size=4096), model, resolve_hardware("rtx-4090"))
    none = resolve_server(LlamaCppSpec(ctx_size=4096, split_mode="none"), model, resolve_hardware("2x rtx-4090"))
    assert none.cost == one.cost


# ---------------------------------------------------------------- all-reduce
def test_allreduce_over_one_gpu_costs_nothing() -> None:
    assert AllReduce(1, 5e-6, 1e9).allreduce(1 << 20) == 0.0
    assert AllReduce(1, 5e-6, 1e9).gather(1 << 20) == 0.0


@pytest.mark.parametrize("n", [2, 4, 8])
def test_allreduce_tends_to_its_latency_as_bandwidth_grows(n: int) -> None:
    alpha, size = 7e-6, float(1 << 20)
    times = [AllReduce(n, alpha, bw).allreduce(size) for bw in (1e9, 1e11, 1e13, 1e15, math.inf)]
    assert all(a > b for a, b in itertools.pairwise(times))
    assert times[-1] == alpha
    assert times[0] == pytest.approx(alpha + 2 * (n - 1) / n * size / 1e9)
    assert AllReduce(n, 0.0, math.inf).allreduce(size) == 0.0


def test_custom_allreduce_is_used_below_its_buffer_and_nccl_above() -> None:
    group = AllReduce(4, 10e-6, 350e9, 4.7e-6, 195e9, 8 << 20)
    assert group.allreduce(1 << 20) == pytest.approx(4.7e-6 + 1.5 * (1 << 20) / 195e9)
    assert group.allreduce(16 << 20) == pytest.approx(10e-6 + 1.5 * (16 << 20) / 350e9)


def test_vllm_custom_allreduce_rule_follows_the_links() -> None:
    model = get_model("llama-3.1-70b")
    nvswitch = resolve_server(VllmSpec(max_model_len=4096, tensor_parallel_size=4), model, resolve_hardware("4x h100-sxm"))
    assert nvswitch.notes["all_reduce"] == "custom"
    off = resolve_server(VllmSpec(max_model_len=4096, tensor_parallel_size=4, disable_custom_all_reduce=True), model,
                         resolve_hardware("4x h100-sxm"))
    assert off.notes["all_reduce"] == "nccl"
    pcie = resolve_server(VllmSpec(max_model_len=4096, tensor_parallel_size=4, quantization="awq"), model,
                          resolve_hardware({"gpu": "rtx-4090", "count": 4}))
    assert pcie.notes["all_reduce"] == "nccl"  # no P2P on GeForce: custom all-reduce off
    assert not link_of(resolve_hardware("2x rtx-5090")).p2p


def test_collective_fits_carry_provenance_and_grow_with_the_group() -> None:
    h100 = resolve_hardware("8x h100-sxm")
    fits = [collective_fit(h100, n, "nccl") for n in (2, 4, 8)]
    assert all(f is not None and f.source and f.n == n for f, n in zip(fits, (2, 4, 8)))
    assert fits[0].alpha_s < fits[2].alpha_s  # type: ignore[union-attr]
    assert collective_fit(h100, 6, "nccl").n == 8  # type: ignore[union-attr]  # unmeasured size: the next measured


# ---------------------------------------------------------------- experts
def test_distinct_experts_closed_form() -> None:
    for e, k in [(8, 2), (128, 8), (256, 8), (64, 6)]:
        assert expected_distinct_experts(e, k, 1) == pytest.approx(k)
        values = [expected_distinct_experts(e, k, b) for b in range(1, 400)]
        assert all(b > a for a, b in itertools.pairwise(values) if b < e - 1e-9)  # monotone
        steps = [b - a for a, b in itertools.pairwise(values)]
        assert all(s2 <= s1 + 1e-12 for s1, s2 in itertools.pairwise(steps))  # concave
        assert expected_distinct_experts(e, k, 1e6) == pytest.approx(e)
        assert expected_distinct_experts(k, k, 5) == k


def test_skew_lowers_distinct_experts_and_raises_the_hottest_rank() -> None:
    for b in (4, 32, 256):
        assert expected_distinct_experts(128, 8, b, skew=1.0) < expected_distinct_experts(128, 8, b)
    assert expected_distinct_experts(128, 8, 1, skew=1.0) == pytest.approx(8)
    assert max_rank_load(256, 8, 8, 0.0) == pytest.approx(1.0)
    assert max_rank_load(256, 8, 8, 1.0) > 1.0


def test_expected_distinct_ranks_deepseek_v3() -> None:
    assert expected_distinct_ranks(256, 8, 8) == pytest.approx(5.29, abs=0.005)
    assert expected_distinct_ranks(256, 8, 16) == pytest.approx(6.52, abs=0.005)


def _moe_and_dense(k: int) -> tuple:
    """An MoE with E = k experts of width w and the dense model of width k*w + k/3: the dense MLP
    holds the experts' weights plus the router's hidden x E (3 x hidden x k/3)."""
    base = get_model("llama-3.1-8b")
    width = 1024
    # (same intermediate_size: unused by an all-MoE model's weights, it sizes vLLM's activation estimate)
    moe = type(base).model_validate({**base.model_dump(), "id": "moe-e-eq-k", "intermediate_size": k * width + k // 3, "moe": {
        "num_experts": k, "experts_per_token": k, "expert_intermediate_size": width}})
    dense = base.model_copy(update={"id": "dense-same-width", "intermediate_size": k * width + k // 3})
    return moe, dense


def test_moe_with_e_equal_k_is_the_dense_model_of_the_same_active_width() -> None:
    moe, dense = _moe_and_dense(3)
    assert moe.num_params == dense.num_params
    assert moe.num_layer_matmul_params == dense.num_layer_matmul_params
    hw = resolve_hardware("h100-sxm")
    a = resolve_server(VllmSpec(max_model_len=4096), moe, hw)
    b = resolve_server(VllmSpec(max_model_len=4096), dense, hw)
    assert a.policy == b.policy
    overhead = moe.num_moe_layers * moe_layer_overhead_s()
    for shape in [*DECODES, BatchShape(num_prefill_tokens=4096, num_prefill_seqs=1, prefill_attention_pairs=4096 * 2048.5)]:
        assert a.cost.step_time(shape) == pytest.approx(b.cost.step_time(shape) + overhead, rel=1e-12)


def test_moe_is_cheap_alone_and_dearer_with_batch() -> None:
    hw = resolve_hardware("2x h100-sxm")
    mixtral = resolve_server(VllmSpec(max_model_len=4096, tensor_parallel_size=2), get_model("mixtral-8x7b"), hw).cost
    steps = [mixtral.step_time(BatchShape(num_decode_seqs=b, num_context_tokens=b * 256)) for b in (1, 8, 64)]
    assert steps[0] < steps[1] < steps[2]
    assert steps[2] / steps[0] > 2.0


# ---------------------------------------------------------------- pipeline and layer splits
def test_get_pp_indices() -> None:
    assert get_pp_indices(61, 4) == [15, 15, 16, 15]
    assert get_pp_indices(80, 3) == [27, 27, 26]
    assert get_pp_indices(126, 8) == [15, 16, 16, 16, 16, 16, 16, 15]
    for layers in (1, 32, 61, 80, 95):
        for pp in (1, 2, 3, 4, 8):
            if pp <= layers:
                assert sum(get_pp_indices(layers, pp)) == layers


def test_llama_cpp_layer_split() -> None:
    assert llama_cpp_layer_split(80, [3, 1]) == [61, 20]  # 19 layers + the output layer
    assert llama_cpp_layer_split(80, [1, 1]) == [41, 40]
    assert sum(llama_cpp_layer_split(61, [1, 2, 3])) == 62


def test_pipeline_stages_give_no_latency_but_hold_more() -> None:
    model, hw = get_model("llama-3.1-70b"), resolve_hardware("8x h100-sxm")
    tp2 = resolve_server(VllmSpec(max_model_len=8192, tensor_parallel_size=2), model, hw)
    tp2pp4 = resolve_server(VllmSpec(max_model_len=8192, tensor_parallel_size=2, pipeline_parallel_size=4), model, hw)
    one = BatchShape(num_decode_seqs=1, num_context_tokens=500)
    assert tp2pp4.cost.step_time(one) >= tp2.cost.step_time(one)
    assert tp2pp4.notes["num_kv_blocks"] > 3 * tp2.notes["num_kv_blocks"]


def test_fast_forwarded_decode_runs_match_passes_priced_one_by_one() -> None:
    cost = resolve_server(VllmSpec(max_model_len=8192, tensor_parallel_size=2, pipeline_parallel_size=2),
                          get_model("mixtral-8x7b"), resolve_hardware("4x h100-sxm")).cost
    seqs, context, passes = 12, 3000, 9
    one_by_one = sum(cost.step_time(BatchShape(num_decode_seqs=seqs, num_context_tokens=context + i * seqs)) for i in range(passes))
    assert cost.decode_line(seqs).run_time(context, seqs, passes) == pytest.approx(one_by_one, rel=1e-12)


# ---------------------------------------------------------------- KV per GPU
@pytest.mark.parametrize("model_id", ["llama-3.1-70b", "qwen3-30b-a3b", "mixtral-8x7b"])
def test_kv_per_gpu_never_falls_below_one_head(model_id: str) -> None:
    model = get_model(model_id)
    one_head = model.kv_bytes_per_token(2.0) / model.num_kv_heads
    previous = math.inf
    for tp in (1, 2, 4, 8, 16, 32):
        if model.num_heads % tp:
            continue
        assert kv_heads_per_gpu(model.num_kv_heads, tp) >= 1
        hw = resolve_hardware(f"{tp}x h200")
        spec = VllmSpec(max_model_len=4096, tensor_parallel_size=tp, enable_expert_parallel=model.moe is not None)
        try:
            resolved = resolve_server(spec, model, hw)
        except EngineError as err:
            assert "do not fit" in str(err)
            continue
        per_gpu = resolved.cost.stage.kv_bytes_per_token if tp > 1 or model.moe else model.kv_bytes_per_token(2.0)
        assert per_gpu >= one_head - 1e-9
        assert per_gpu <= previous
        previous = per_gpu


def test_mla_latent_is_replicated_on_every_tp_rank() -> None:
    model = get_model("deepseek-v3")
    assert model.kv_bytes_per_token(2.0) == 61 * 576 * 2
    resolved = resolve_server(VllmSpec(max_model_len=4096, tensor_parallel_size=8, quantization="fp8"), model,
                              resolve_hardware("8x h200"))
    assert resolved.cost.stage.kv_bytes_per_token == model.kv_bytes_per_token(2.0)


# ---------------------------------------------------------------- refusals
REFUSALS = [
    ("llama-3.1-70b", "8x h100-sxm", {"tensor_parallel_size": 3},
     "Total number of attention heads (64) must be divisible by tensor parallel size (3)."),
    ("llama-3.1-70b", "8x h100-sxm", {"tensor_parallel_size": 4, "pipeline_parallel_size": 4},
     "World size (16) is larger than the number of available GPUs (8) in this node"),
    ("llama-3.1-70b", "h100-sxm", {}, "do not fit in gpu_memory_utilization"),
    ("llama-3.1-405b", "8x h100-sxm", {"tensor_parallel_size": 8}, "weights per GPU"),
    ("llama-3.1-70b", "8x h100-sxm", {"tensor_parallel_size": 2, "enable_expert_parallel": True},
     "Number of experts in the model must be greater than 0 when expert parallelism is enabled."),
    ("qwen3-30b-a3b", "8x h100-sxm", {"pipeline_parallel_size": 2, "pp_layer_partition": [10, 10]},
     "does not match num_hidden_layers=48"),
]


@pytest.mark.parametrize(("model_id", "hardware", "knobs", "message"), REFUSALS)
def test_vllm_refuses_as_vllm_does(model_id: str, hardware: str, knobs: dict, message: str) -> None:
    with pytest.raises(EngineError, match=None) as err:
        resolve_server(VllmSpec(max_model_len=4096, **knobs), get_model(model_id), resolve_hardware(hardware))
    assert message in str(err.value)


@pytest.mark.parametrize(("heads", "kv", "tp", "message"), [(48, 8, 12, "12 is not divisible by 8"),
                                                          (48, 12, 8, "12 is not divisible by 8")])
def test_kv_heads_must_divide_or_be_divided_by_tp(heads: int, kv: int, tp: int, message: str) -> None:
    model = get_model("llama-3.1-8b").model_copy(update={"num_heads": heads, "num_kv_heads": kv, "id": "odd"})
    with pytest.raises(EngineError) as err:
        resolve_server(VllmSpec(max_model_len=4096, tensor_parallel_size=tp), model, resolve_hardware("16x h100-sxm"))
    assert message in str(err.value)


def test_moe_intermediate_must_split_over_tp_without_ep() -> None:
    model = get_model("mixtral-8x7b")
    odd = model.model_copy(update={"moe": model.moe.model_copy(update={"expert_intermediate_size": 14337})})  # type: ignore[union-attr]
    with pytest.raises(EngineError, match="14337 is not divisible by 2"):
        resolve_server(VllmSpec(max_model_len=4096, tensor_parallel_size=2), odd, resolve_hardware("2x h100-sxm"))
    resolve_server(VllmSpec(max_model_len=4096, tensor_parallel_size=2, enable_expert_parallel=True), odd,
                   resolve_hardware("2x h100-sxm"))


# ---------------------------------------------------------------- hardware nodes and configs
def test_nodes_are_written_as_catalog_gpus() -> None:
    node = resolve_hardware("8x h100-sxm")
    assert (node.count, node.id, link_of(node).id) == (8, "h100-sxm", "nvlink4-nvswitch")
    inline = resolve_hardware({"gpu": "rtx-5090", "count": 2, "interconnect": "pcie5"})
    assert (inline.count, link_of(inline).p2p) == (2, True)
    with pytest.raises(ScenarioError, match="unknown interconnect 'nvlink9'; valid: "):
        resolve_hardware({"gpu": "rtx-5090", "count": 2, "interconnect": "nvlink9"})
    with pytest.raises(ScenarioError, match="a node takes only"):
        resolve_hardware({"gpu": "rtx-5090", "count": 2, "links": "x"})


def test_moe_configs_read_as_the_catalog_entries() -> None:
    pairs = {"mistralai__Mixtral-8x7B-v0.1": "mixtral-8x7b", "Qwen__Qwen3-30B-A3B": "qwen3-30b-a3b",
             "Qwen__Qwen3-235B-A22B": "qwen3-235b-a22b", "openai__gpt-oss-20b": "gpt-oss-20b",
             "openai__gpt-oss-120b": "gpt-oss-120b", "deepseek-ai__DeepSeek-V3": "deepseek-v3",
             "meta-llama__Meta-Llama-3.1-405B": "llama-3.1-405b"}
    for name, cid in pairs.items():
        read = model_from_hf_config(CONFIGS / f"{name}.config.json", id=cid)
        entry = get_model(cid)
        assert (read.num_params, read.num_active_params, read.kv_bytes_per_token(2.0)) == (
            entry.num_params, entry.num_active_params, entry.kv_bytes_per_token(2.0))
    assert get_model("mixtral-8x7b").num_params == pytest.approx(46.7e9, rel=0.01)
    assert get_model("deepseek-v3").num_params == pytest.approx(671e9, rel=0.01)
    assert get_model("qwen3-30b-a3b").num_active_params == pytest.approx(3.3e9, rel=0.03)
    assert get_model("deepseek-v2-lite").num_params == pytest.approx(15.7e9, rel=0.01)


def test_an_unknown_moe_config_is_refused_not_priced_dense(tmp_path: Path) -> None:
    import json

    config = json.loads((CONFIGS / "mistralai__Mixtral-8x7B-v0.1.config.json").read_text())
    config["model_type"] = "mystery_moe"
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(CatalogError, match="field 'num_experts_per_tok' = 2 .* not understood for model_type 'mystery_moe'"):
        model_from_hf_config(path)


def test_ollama_placement_by_version() -> None:
    model = get_model("llama-3.1-70b")
    node = resolve_hardware("2x rtx-5090")
    old = resolve_server(OllamaSpec(version="0.12.0"), model, node)
    assert old.notes["gpus_used"] == 2 and old.notes["layers_per_gpu"] == [41, 40]
    small = get_model("llama-3.1-8b")
    assert resolve_server(OllamaSpec(version="0.31.0"), small, node).notes["gpus_used"] == 1
    assert resolve_server(OllamaSpec(version="0.31.0", sched_spread=True), small, node).notes["gpus_used"] == 2


def test_llama_cpp_layer_split_is_one_device_plus_hops() -> None:
    model = get_model("llama-3.1-70b")
    split = resolve_server(LlamaCppSpec(ctx_size=8192), model, resolve_hardware("2x rtx-5090")).cost
    assert isinstance(split, ParallelStepCost) and split.sends == 1 and split.pp == 1
    one = replace(split, sends=0)
    for shape in DECODES:
        hop = split.send_alpha_s + shape.num_tokens * split.send_bytes_per_token / split.send_bytes_per_s
        assert split.step_time(shape) == pytest.approx(one.step_time(shape) + hop, rel=1e-12)


# ---------------------------------------------------------------- fitted files are current
def test_collectives_yaml_is_what_the_fit_writes() -> None:
    import yaml

    from calibration import interconnect

    written = yaml.safe_load(Path(interconnect.OUT).read_text())
    assert written == yaml.safe_load(yaml.safe_dump(interconnect.build(), sort_keys=False))


def test_moe_kernel_fit_is_current_and_recovers_a_known_overhead() -> None:
    import yaml

    from calibration import moe_kernels

    doc = yaml.safe_load(Path(moe_kernels.OUT).read_text())
    assert doc["layer_overhead_us"] * 1e-6 == pytest.approx(moe_layer_overhead_s())
    # synthetic table built from the model itself: the fit returns its parameters
    batch = [1, 2, 4, 8, 16, 32, 64, 128]
    times = [(25.0e-6 + expected_distinct_experts(64, 4, b) * 2e6 / 2.0e12) * 1e6 for b in batch]
    fit = moe_kernels.fit_table({"id": "synthetic", "num_experts": 64, "top_k": 4, "expert_bytes": 2e6,
                                 "batch": batch, "time_us": times})
    assert fit["t0_us"] == pytest.approx(25.0, abs=0.01)
    assert fit["bandwidth_tb_s"] == pytest.approx(2.0, abs=0.001)


def test_allreduce_fit_recovers_alpha_and_bus_bandwidth() -> None:
    import numpy as np

    from calibration.interconnect import fit_alpha_busbw

    sizes = np.geomspace(2048, 64 << 20, 40)
    times = 12e-6 + 1.5 * sizes / 300e9
    alpha, busbw, rel = fit_alpha_busbw(sizes, times, 1.5)
    assert alpha == pytest.approx(12e-6, rel=1e-6) and busbw == pytest.approx(300e9, rel=1e-6)
    assert np.abs(rel).max() < 1e-9


def test_row_split_shards_weights_and_keeps_the_kv_on_the_main_gpu() -> None:
    model = get_model("llama-3.1-70b")
    row = resolve_server(LlamaCppSpec(ctx_size=4096, split_mode="row"), model, resolve_hardware("2x rtx-5090"))
    layer = resolve_server(LlamaCppSpec(ctx_size=4096), model, resolve_hardware("2x rtx-5090"))
    assert row.notes["split_mode"] == "row" and layer.notes["split_mode"] == "layer"
    assert isinstance(row.cost, ParallelStepCost)
    assert row.cost.stage.kv_bytes_per_token == pytest.approx(model.kv_bytes_per_token(2.0))
    assert row.cost.tp.n == 2 and row.cost.tp.custom_max_bytes == 0.0


def test_long_prompts_read_the_experts_once_per_ubatch() -> None:
    cost = resolve_server(LlamaCppSpec(ctx_size=8192, ubatch_size=512), get_model("qwen3-30b-a3b"),
                          resolve_hardware("rtx-4090")).cost
    assert isinstance(cost, ParallelStepCost) and cost.moe is not None
    one = cost.moe.time(512)
    assert cost.extra_time(2048, 1) == pytest.approx(4 * one)


def test_data_parallel_ranks_share_the_batch_and_each_bring_a_pool() -> None:
    model = get_model("llama-3.1-8b")
    one = resolve_server(VllmSpec(max_model_len=8192), model, resolve_hardware("h100-sxm"))
    dp2 = resolve_server(VllmSpec(max_model_len=8192, data_parallel_size=2), model, resolve_hardware("2x h100-sxm"))
    assert dp2.policy.num_blocks == 2 * one.policy.num_blocks  # type: ignore[union-attr]
    assert dp2.policy.max_num_seqs == 2 * one.policy.max_num_seqs  # type: ignore[union-attr]
    for seqs, context in ((8, 4000), (64, 64000)):
        half = one.cost.decode_line(seqs // 2).at(context // 2)  # type: ignore[union-attr]
        assert dp2.cost.step_time(BatchShape(num_decode_seqs=seqs, num_context_tokens=context)) == pytest.approx(half, rel=1e-12)


def test_llama_cpp_overlaps_the_ubatches_of_a_long_prompt_across_its_devices() -> None:
    model = get_model("llama-3.1-70b")
    split = resolve_server(LlamaCppSpec(ctx_size=8192, ubatch_size=512), model, resolve_hardware("2x rtx-5090")).cost
    assert isinstance(split, ParallelStepCost) and split.overlap_devices == 2
    serial = replace(split, overlap_devices=1)
    prompt = BatchShape(num_prefill_tokens=2048, num_prefill_seqs=1, prefill_attention_pairs=2048 * 1024.5)
    hops = split.comm_time(2048, 1)
    assert split.step_time(prompt) - hops == pytest.approx((serial.step_time(prompt) - hops) * (4 + 1) / (4 * 2), rel=1e-12)
    short = BatchShape(num_prefill_tokens=300, num_prefill_seqs=1, prefill_attention_pairs=300 * 150.5)
    assert split.step_time(short) == serial.step_time(short)  # one ubatch: nothing to overlap
    ollama = resolve_server(OllamaSpec(version="0.12.0"), model, resolve_hardware("2x rtx-5090")).cost
    assert isinstance(ollama, ParallelStepCost) and ollama.overlap_devices == 1


def test_qwen2_moe_config_counts_shared_experts(tmp_path: Path) -> None:
    """Qwen1.5-MoE-A2.7B's shape (60 experts of 1408, 4 active, shared expert 5632): the model card
    states 14.3 B parameters, 2.7 B active."""
    import json

    config = {"model_type": "qwen2_moe", "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 24,
              "num_attention_heads": 16, "num_key_value_heads": 16, "vocab_size": 151936,
              "max_position_embeddings": 8192, "num_experts": 60, "num_experts_per_tok": 4,
              "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632, "decoder_sparse_step": 1,
              "mlp_only_layers": [], "tie_word_embeddings": False}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    model = model_from_hf_config(path, "qwen2-moe-test")
    assert model.num_params == pytest.approx(14.3e9, rel=0.01)
    assert model.num_active_params == pytest.approx(2.7e9, rel=0.02)
    assert model.attention_bias
    sparse = model_from_hf_config(_write(tmp_path / "b", {**config, "decoder_sparse_step": 2}), "qwen2-moe-sparse")
    assert sparse.num_moe_layers == 12  # layers 1, 3, 5, ...: (layer + 1) % 2 == 0


def _write(directory: Path, config: dict) -> Path:
    import json

    directory.mkdir()
    path = directory / "config.json"
    path.write_text(json.dumps(config))
    return path
