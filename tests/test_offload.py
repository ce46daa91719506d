"""Partial GPU offload (issue 20), tied to the servers it generalises.

Every layer on the GPU is today's server (the same cost object, the same results); ``-ngl 0``
without op offload is the host CPU's own roofline; the step time never rises as layers move to
the GPU; between the end points a decode step follows the sum-of-times line (each layer moved
adds its GPU time and removes its CPU time); which layers go where follows llama.cpp by build;
Ollama's estimate gives 0 layers on a card too small for its graph; bad input is refused with
the field and a valid value; vLLM still refuses a model that does not fit.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.catalog import get_format, get_hardware, get_model, resolve_hardware
from sim.costs import RooflineStepCost
from sim.costs_offload import MIN_STREAM_TOKENS, OffloadStepCost
from sim.engines import EngineError, resolve_server
from sim.offload import fit_layers, ollama_legacy_layers, place
from sim.scenario.servers import LlamaCppSpec, OllamaSpec, VllmSpec
from sim.shapes import BatchShape

GIB = float(1 << 30)
NO_FRONT = {"request_s": 0.0, "token_s": 0.0, "step_s": 0.0}
DECODES = [BatchShape(num_decode_seqs=b, num_context_tokens=b * c) for b in (1, 3, 40) for c in (16, 900)]
PROMPTS = [BatchShape(num_prefill_tokens=n, num_prefill_seqs=1, prefill_attention_pairs=n * n / 2) for n in (8, 31, 32, 512, 2000)]


def _cost(spec: LlamaCppSpec | OllamaSpec, model: str = "llama-3.1-70b", hardware: str = "rtx-4090"):
    return resolve_server(spec, get_model(model), resolve_hardware(hardware))


# ---------------------------------------------------------------- every layer on the GPU = today
@pytest.mark.parametrize("ngl", [33, 99, 999])
def test_every_layer_on_the_gpu_is_todays_llama_cpp_server(ngl: int) -> None:
    today = _cost(LlamaCppSpec(ctx_size=4096), "llama-3.1-8b")
    explicit = _cost(LlamaCppSpec(ctx_size=4096, n_gpu_layers=ngl), "llama-3.1-8b")
    assert isinstance(explicit.cost, RooflineStepCost)
    assert explicit.cost == today.cost and explicit.policy == today.policy


@pytest.mark.parametrize("version", ["0.12.0", "0.30.0"])
def test_every_layer_on_the_gpu_is_todays_ollama_server(version: str) -> None:
    today = _cost(OllamaSpec(version=version), "llama-3.1-8b")
    for num_gpu in (-1, 33):
        explicit = _cost(OllamaSpec(version=version, num_gpu=num_gpu), "llama-3.1-8b")
        assert explicit.cost == today.cost and explicit.policy == today.policy
        assert "split" not in explicit.notes


def test_fit_keeps_a_model_that_fits_whole() -> None:
    """--fit (a build with -ngl auto) changes nothing for a model that fits: today's server."""
    old = _cost(LlamaCppSpec(version="b7100", ctx_size=4096, parallel=1), "llama-3.1-8b")
    new = _cost(LlamaCppSpec(version="b7600", ctx_size=4096, parallel=1, kv_unified=False, context_shift=False), "llama-3.1-8b")
    assert isinstance(new.cost, RooflineStepCost)
    assert new.cost == old.cost


# ---------------------------------------------------------------- -ngl 0 = the host CPU
def test_ngl0_is_the_host_cpu_roofline() -> None:
    """-ngl 0 with --no-op-offload is a CPU-only run: the same cost as llama.cpp on the host CPU."""
    gpu = get_hardware("rtx-4090")
    offloaded = _cost(LlamaCppSpec(ctx_size=4096, n_gpu_layers=0, op_offload=False, threads=16, frontend=NO_FRONT))
    cpu_only = resolve_server(LlamaCppSpec(ctx_size=4096, threads=16, frontend=NO_FRONT), get_model("llama-3.1-70b"),
                              get_hardware(offloaded.notes["host"]))
    assert gpu.host is None and offloaded.notes["host"] == "cpu-generic-16c"  # the documented default host
    assert offloaded.notes["split"] == "100% CPU"
    assert offloaded.cost == cpu_only.cost


def test_ngl0_with_op_offload_streams_only_batches_of_32() -> None:
    """With op offload (the default) -ngl 0 is still the CPU for decode and prompts < 32 tokens;
    prompts of >= 32 tokens run on the GPU with the weights copied over PCIe."""
    plain = _cost(LlamaCppSpec(ctx_size=4096, n_gpu_layers=0, op_offload=False, frontend=NO_FRONT)).cost
    streamed = _cost(LlamaCppSpec(ctx_size=4096, n_gpu_layers=0, frontend=NO_FRONT)).cost
    assert isinstance(streamed, OffloadStepCost)
    for shape in DECODES + PROMPTS:
        if shape.num_tokens < MIN_STREAM_TOKENS:  # the same formula, summed in another order (1 ulp apart)
            assert streamed.step_time(shape) == pytest.approx(plain.step_time(shape), rel=1e-12, abs=0)
        else:
            assert streamed.step_time(shape) != plain.step_time(shape)
    big = PROMPTS[-1]
    assert streamed.step_time(big) < plain.step_time(big)  # PCIe beats a CPU's prompt processing


# ---------------------------------------------------------------- monotone, sum of times
def _times(model: str, output_first: bool, op_offload: bool, hardware: str, price) -> list[float]:
    version = "b7600" if output_first else "b7100"
    spec = LlamaCppSpec(version=version, ctx_size=2048, parallel=1, kv_unified=False, op_offload=op_offload)
    m = get_model(model)
    times = []
    for ngl in range(m.num_layers + 2):  # up to the most layers the card holds
        try:
            cost = resolve_server(spec.model_copy(update={"n_gpu_layers": ngl}), m, get_hardware(hardware)).cost
        except EngineError:
            break
        times.append(price(cost))
    assert len(times) > 10
    return times


@settings(max_examples=25, deadline=None)
@given(model=st.sampled_from(["llama-3.1-8b", "llama-3.1-70b", "qwen2.5-7b"]), output_first=st.booleans(),
       op_offload=st.booleans(), shape=st.sampled_from(DECODES), hardware=st.sampled_from(["h100-sxm", "rtx-3060"]))
def test_decode_step_never_slows_as_layers_move_to_the_gpu(model: str, output_first: bool, op_offload: bool,
                                                            shape: BatchShape, hardware: str) -> None:
    times = _times(model, output_first, op_offload, hardware, lambda cost: cost.step_time(shape))
    assert all(b <= a * (1 + 1e-12) for a, b in itertools.pairwise(times)), times


@settings(max_examples=25, deadline=None)
@given(model=st.sampled_from(["llama-3.1-8b", "llama-3.1-70b", "qwen2.5-7b"]), output_first=st.booleans(),
       op_offload=st.booleans(), prompt=st.sampled_from([8, 31, 32, 512, 2000]), hardware=st.sampled_from(["h100-sxm", "rtx-3060"]))
def test_a_request_never_slows_as_layers_move_to_the_gpu(model: str, output_first: bool, op_offload: bool,
                                                          prompt: int, hardware: str) -> None:
    """Throughput of a request (its prompt, then 16 decode steps) never falls as layers move to the GPU.

    (A prompt pass alone, without op offload, can rise by < 0.01 % when only the output layer
    moves: the CPU's whole-pass roofline is compute-bound there, so the head's bytes it no
    longer reads save nothing, while the GPU reads them once per ubatch.)"""
    shape = BatchShape(num_prefill_tokens=prompt, num_prefill_seqs=1, prefill_attention_pairs=prompt * prompt / 2)

    def request(cost) -> float:
        return cost.step_time(shape) + cost.decode_line(1).run_time(prompt, 1, 16)

    times = _times(model, output_first, op_offload, hardware, request)
    assert all(b <= a * (1 + 1e-12) for a, b in itertools.pairwise(times)), times


def test_decode_follows_the_sum_of_times_line() -> None:
    """Moving repeating layers (old builds: output stays on the CPU for 1 <= ngl <= L) changes a
    decode step by the same amount per layer: t(ngl) is affine between ngl = 1 and ngl = L."""
    m = get_model("llama-3.1-70b")
    spec = LlamaCppSpec(version="b7100", ctx_size=2048, parallel=1, kv_unified=False, op_offload=False)
    shape = BatchShape(num_decode_seqs=1, num_context_tokens=700)
    t = [resolve_server(spec.model_copy(update={"n_gpu_layers": k}), m, get_hardware("h100-sxm")).cost.step_time(shape)
         for k in range(1, m.num_layers + 1)]
    steps = [b - a for a, b in itertools.pairwise(t)]
    assert all(s < 0 for s in steps)
    assert max(steps) == pytest.approx(min(steps), rel=1e-9)


# ---------------------------------------------------------------- which layers go where
def test_layers_by_build() -> None:
    m, fmt = get_model("llama-3.1-8b"), get_format("q4_k_m")
    kv = m.kv_bytes_per_token(2.0)
    n = m.num_layers
    old = place(m, fmt, kv, n, output_first=False, reason="")
    assert (old.gpu_layers, old.output_on_gpu, old.offloaded) == (n, False, n)  # -ngl 32: output on the CPU
    assert place(m, fmt, kv, n + 1, output_first=False, reason="").full
    new = place(m, fmt, kv, 1, output_first=True, reason="")
    assert (new.gpu_layers, new.output_on_gpu) == (0, True)  # the output is offloaded first
    assert place(m, fmt, kv, 5, output_first=False, reason="").gpu_kv_per_token == pytest.approx(kv * 5 / n)
    embed = m.num_embedding_params * fmt.embedding_bits_per_weight / 8
    for ngl in range(n + 2):  # the embedding always stays on the CPU; the bytes add up
        off = place(m, fmt, kv, ngl, output_first=True, reason="")
        total = off.gpu_weight_bytes + off.cpu_weight_bytes
        assert off.cpu_weight_bytes >= embed
        assert total == pytest.approx(m.weight_bytes(fmt) - m.hidden_size * fmt.bits_per_weight / 8 + embed * m.tie_word_embeddings, rel=1e-6)


def test_ollama_estimate_gives_no_layers_to_a_card_too_small_for_its_graph() -> None:
    """EstimateGPULayers: free < overhead + graph + minimum + 2 layers -> 0 layers (T9)."""
    m, fmt = get_model("llama-3.1-70b"), get_format("q4_k_m")
    kv = m.kv_bytes_per_token(2.0)
    assert ollama_legacy_layers(m, fmt, kv, 4096, 1.2 * GIB) == 0
    more = [ollama_legacy_layers(m, fmt, kv, 4096, gib * GIB) for gib in (8, 16, 24, 48, 80)]
    assert more == sorted(more) and 0 < more[0] and more[-1] == m.num_layers + 1


def test_ollama_default_split_is_printed_like_ollama_ps() -> None:
    for version in ("0.12.0", "0.30.0"):
        r = _cost(OllamaSpec(version=version))
        cpu, gpu = r.notes["split"].removesuffix(" CPU/GPU").split("/")
        assert int(cpu.rstrip("%")) + int(gpu.rstrip("%")) == 100 and 0 < int(gpu.rstrip("%")) < 100
    fitted = _cost(OllamaSpec(version="0.30.0"))
    m = get_model("llama-3.1-70b")
    ngl = fit_layers(m, get_format("q4_k_m"), m.kv_bytes_per_token(2.0), 4096, 24 * GIB, GIB, output_first=True)
    assert fitted.notes["num_gpu"] == ngl and fitted.notes["output_layer"] == "GPU"


# ---------------------------------------------------------------- refusals
def test_num_gpu_above_the_layer_count_is_refused() -> None:
    with pytest.raises(EngineError) as err:
        _cost(OllamaSpec(num_gpu=200))
    assert "num_gpu=200" in str(err.value) and "num_gpu <= 81" in str(err.value)


def test_too_many_layers_for_the_card_is_refused_with_the_most_that_fit() -> None:
    with pytest.raises(EngineError) as err:
        _cost(LlamaCppSpec(ctx_size=4096, n_gpu_layers=60))
    assert "n_gpu_layers=60" in str(err.value) and "n_gpu_layers <=" in str(err.value)


def test_vllm_still_refuses_a_model_that_does_not_fit() -> None:
    with pytest.raises(EngineError, match="do not fit"):
        _cost(VllmSpec(quantization="awq"))


# ---------------------------------------------------------------- --fit's default context (§3.4 step 2)
@pytest.mark.parametrize(("model_id", "unified"), [("llama-3.1-8b", True), ("qwen2.5-14b", True), ("llama-3.1-8b", False)])
def test_fit_builds_take_the_model_context_shrunk_to_leave_1_gib(model_id: str, unified: bool) -> None:
    from sim.engines.base import CUDA_CONTEXT_BYTES, _format_for, _kv_bytes
    from sim.offload import FIT_TARGET_BYTES

    hw, model = get_hardware("rtx-4090"), get_model(model_id)
    spec = LlamaCppSpec(version="b7600", quantization="q4_k_m", kv_unified=unified, parallel=4)
    resolved = resolve_server(spec, model, hw)
    ctx = int(resolved.notes["ctx_size"])
    kv, weights = _kv_bytes(model, spec), model.weight_bytes(_format_for(spec, "llama.cpp"))

    def leaves_target(n: int) -> bool:
        return weights + n * kv + CUDA_CONTEXT_BYTES + FIT_TARGET_BYTES <= hw.memory_bytes

    step = 256 * (1 if unified else 4)
    assert ctx % step == 0 or ctx == model.max_position_embeddings
    assert leaves_target(ctx)
    assert ctx == model.max_position_embeddings or not leaves_target(ctx + step)  # the largest that fits
    assert ctx > 4096 and "--fit" in resolved.notes["ctx_size_reason"]


def test_fit_context_floor_and_older_builds_and_a_given_context() -> None:
    hw = get_hardware("rtx-4090")
    # a model that does not fit whole: the context shrinks to --fit-ctx and the layers move instead
    big = resolve_server(LlamaCppSpec(version="b7600", quantization="q4_k_m"), get_model("llama-3.1-70b"), hw)
    assert big.notes["ctx_size"] == 4096
    old = resolve_server(LlamaCppSpec(version="b7100", quantization="q4_k_m"), get_model("llama-3.1-8b"), hw)
    assert old.notes["ctx_size"] == 4096 and "before" in old.notes["ctx_size_reason"]
    given = resolve_server(LlamaCppSpec(version="b7600", quantization="q4_k_m", ctx_size=8192),
                           get_model("llama-3.1-8b"), hw)
    assert given.notes["ctx_size"] == 8192 and given.notes["ctx_size_reason"] == "given"


# ---------------------------------------------------------------- -nkvo: the KV cache and attention on the host CPU
def _nkvo(**kw: object):  # noqa: ANN202 - a test helper
    """Llama-3.1-8B Q4_K_M on an RTX 4090, one slot, no front end (its cost objects are examined)."""
    spec = LlamaCppSpec(**{"quantization": "q4_k_m", "parallel": 1, "frontend": {"profile": "none"}, **kw})
    return resolve_server(spec, get_model("llama-3.1-8b"), get_hardware("rtx-4090"))


def test_nkvo_reads_the_kv_at_the_host_bandwidth_and_costs_two_hops_per_layer() -> None:
    from sim.engines.base import _kv_bytes

    model = get_model("llama-3.1-8b")
    on_host = _nkvo(ctx_size=32768, no_kv_offload=True)
    on_gpu = _nkvo(ctx_size=32768)
    kv = _kv_bytes(model, LlamaCppSpec(quantization="q4_k_m"))
    host = on_host.cost.cpu
    line, gpu_line = on_host.cost.decode_line(1), on_gpu.cost.decode_line(1)
    # each more context token is read from host memory at the host's bandwidth
    assert (line.at(20000) - line.at(10000)) / 10000 == pytest.approx(kv / host.bandwidth_bytes_per_s, rel=1e-9)
    assert (gpu_line.at(20000) - gpu_line.at(10000)) / 10000 < kv / host.bandwidth_bytes_per_s
    # the weights stay on the GPU: at no context the passes differ by the 2 L hops (and the one new
    # token's KV written on the host instead of the GPU)
    hops = 2 * model.num_layers * (on_host.cost.hop_alpha_s + model.hidden_size * 4 / on_host.cost.link_bytes_per_s)
    assert line.at(0) - gpu_line.at(0) == pytest.approx(hops + kv / host.bandwidth_bytes_per_s
                                                        - kv / on_gpu.cost.bandwidth_bytes_per_s, rel=1e-6)
    assert on_host.notes["no_kv_offload"] and on_host.notes["host_ram_gib"] > 0


def test_nkvo_is_never_faster_and_frees_the_gpu_of_the_kv() -> None:
    from sim.shapes import BatchShape

    on_host, on_gpu = _nkvo(ctx_size=32768, no_kv_offload=True), _nkvo(ctx_size=32768)
    for d, c in itertools.product((1, 4, 16), (0, 1000, 30000)):
        assert on_host.cost.decode_line(d).at(c * d) >= on_gpu.cost.decode_line(d).at(c * d)
    prompt = BatchShape(num_prefill_seqs=1, num_prefill_tokens=4096, prefill_attention_pairs=4096 * 4097 / 2)
    assert on_host.cost.step_time(prompt) > on_gpu.cost.step_time(prompt)
    # a context whose KV does not fit the 24 GB card beside the Q8_0 weights (8.5 + 16 GiB) runs with -nkvo
    with pytest.raises(EngineError):
        _nkvo(ctx_size=131072, quantization="q8_0")
    big = _nkvo(ctx_size=131072, quantization="q8_0", no_kv_offload=True)
    assert big.notes["vram_gib"] < 24 < big.notes["vram_gib"] + big.notes["host_ram_gib"]


@pytest.mark.parametrize(("options", "words"), [
    ({"n_gpu_layers": 20}, "every layer on the GPU"),
    ({"ctx_size": 1 << 20, "hardware": "rtx-4090-small-host"}, "host memory"),
])
def test_nkvo_refusals_name_the_fix(options: dict, words: str) -> None:
    hardware = get_hardware("rtx-4090")
    if options.pop("hardware", None):
        hardware = hardware.model_copy(update={"host": "epyc-zen5-2c-vm"})
    spec = LlamaCppSpec(quantization="q4_k_m", parallel=1, ctx_size=options.pop("ctx_size", 4096), no_kv_offload=True,
                        **options)
    with pytest.raises(EngineError, match=words):
        resolve_server(spec, get_model("llama-3.1-8b"), hardware)
    with pytest.raises(EngineError, match="dense model on one GPU"):
        resolve_server(LlamaCppSpec(quantization="q4_k_m", no_kv_offload=True), get_model("qwen3-30b-a3b"), hardware)
