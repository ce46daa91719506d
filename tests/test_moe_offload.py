"""Expert offload of mixture-of-experts models (issue 20 item 1), tied to the servers it generalises.

No expert on the CPU (``n_cpu_moe: 0``, an empty ``override_tensor``) is today's server, the same
cost object; ``n_cpu_moe`` = the layer count, ``cpu_moe: true`` and the ``-ot`` pattern that
selects every expert are the same placement and price, as are ``-ot`` layer ranges and the
``n_cpu_moe`` they spell; a decode step is the GPU's pass without those experts plus the host
CPU-only run's expert term plus the hops (sum of times); decode never gets faster as experts
move to the CPU; with E = k every expert of the CPU layers is read by every step; ``--fit``
keeps the fewest experts in RAM that leave its 1 GiB free; bad input is refused naming the field
and a valid fix.
"""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys
from pathlib import Path

import pytest

from sim.catalog import get_format, get_model, resolve_hardware
from sim.cli.check import check_scenario_file
from sim.costs_offload import MIN_STREAM_TOKENS, ExpertOffloadStepCost
from sim.costs_parallel import ParallelStepCost
from sim.engines import EngineError, resolve_server
from sim.engines.base import CUDA_CONTEXT_BYTES
from sim.offload import FIT_TARGET_BYTES, GGML_ACT_BYTES, HOP_ALPHA_S, place_experts
from sim.scenario import ScenarioError
from sim.scenario.costs import FrontendSpec
from sim.scenario.servers import LlamaCppSpec, OllamaSpec
from sim.shapes import BatchShape

MODEL = "qwen3-30b-a3b"
DECODES = [BatchShape(num_decode_seqs=b, num_context_tokens=b * c) for b in (1, 4, 31, 32, 64) for c in (16, 900)]
PROMPTS = [BatchShape(num_prefill_tokens=n, num_prefill_seqs=1, prefill_attention_pairs=n * n / 2) for n in (8, 31, 32, 512, 2000)]


def _spec(**kw: object) -> LlamaCppSpec:
    return LlamaCppSpec(version="b7100", quantization="q4_k_m", ctx_size=4096, parallel=1, kv_unified=False, **kw)


def _resolve(spec: LlamaCppSpec | OllamaSpec, hardware: str = "rtx-3060", model: str = MODEL):
    """The server without a front end (its in-engine part would wrap the cost objects examined here)."""
    if spec.frontend is None:
        spec = spec.model_copy(update={"frontend": FrontendSpec(profile="none")})
    return resolve_server(spec, get_model(model), resolve_hardware(hardware))


# ---------------------------------------------------------------- no expert on the CPU = today
@pytest.mark.parametrize("options", [{"n_cpu_moe": 0}, {"override_tensor": []}, {"cpu_moe": False}])
def test_no_expert_on_the_cpu_is_todays_server(options: dict) -> None:
    """On a card that holds the model (24 GiB for ~17 GiB of Q4_K_M), options that move no expert
    give today's cost object and policy."""
    today = _resolve(_spec(), "rtx-4090")
    same = _resolve(_spec(**options), "rtx-4090")
    assert isinstance(today.cost, ParallelStepCost)
    assert same.cost == today.cost and same.policy == today.policy and "split" not in same.notes
    for shape in DECODES + PROMPTS:
        assert same.cost.step_time(shape) == today.cost.step_time(shape)


def test_all_layers_equal_cpu_moe_and_its_pattern() -> None:
    n = get_model(MODEL).num_layers
    every = _resolve(_spec(cpu_moe=True))
    assert isinstance(every.cost, ExpertOffloadStepCost)
    for options in ({"n_cpu_moe": n}, {"override_tensor": [r"\.ffn_(up|down|gate)_exps=CPU"]},
                    {"cpu_moe": True, "n_cpu_moe": 7}):
        other = _resolve(_spec(**options))
        assert other.cost == every.cost
        assert {k: v for k, v in other.notes.items() if k != "split_reason"} == {
            k: v for k, v in every.notes.items() if k != "split_reason"}
        for shape in DECODES + PROMPTS:
            assert other.cost.step_time(shape) == every.cost.step_time(shape)


def test_override_layer_ranges_equal_n_cpu_moe() -> None:
    """``-ot`` patterns are matched on llama.cpp's tensor names: a range of layers is that many layers."""
    first20 = _resolve(_spec(n_cpu_moe=20))
    ot = _resolve(_spec(override_tensor=[r"blk\.([0-9]|1[0-9])\.ffn_.*_exps=CPU"]))
    two = _resolve(_spec(override_tensor=[r"blk\.[0-9]\.ffn_.*_exps=CPU", r"blk\.1[0-9]\.ffn_(up|down|gate)_exps\.=CPU"]))
    assert first20.notes["n_cpu_moe"] == ot.notes["n_cpu_moe"] == two.notes["n_cpu_moe"] == 20
    assert ot.cost == first20.cost == two.cost


# ---------------------------------------------------------------- sum of times, monotone
@pytest.mark.parametrize("layers", [1, 20, 48])
def test_decode_is_the_gpu_pass_plus_the_cpu_only_runs_experts(layers: int) -> None:
    """Below 32 tokens a decode step = the GPU's pass with the other layers' experts + the expert
    term of llama.cpp run on the host CPU alone (same profile) for these layers + two hops each."""
    model = get_model(MODEL)
    resolved = _resolve(_spec(n_cpu_moe=layers), "h100-sxm")
    cost = resolved.cost
    assert isinstance(cost, ExpertOffloadStepCost)
    today = _resolve(_spec(), "h100-sxm").cost
    cpu_run = _resolve(_spec(), resolved.notes["host"]).cost
    assert isinstance(today, ParallelStepCost) and isinstance(cpu_run, ParallelStepCost)
    assert today.moe is not None and cpu_run.moe is not None
    gpu_rest = dataclasses.replace(today, moe=dataclasses.replace(today.moe, layers=model.num_moe_layers - layers))
    link = cost.link_bytes_per_s
    for shape in DECODES:
        b = shape.num_decode_seqs
        if b >= MIN_STREAM_TOKENS:
            continue
        hops = 2 * layers * (HOP_ALPHA_S + b * model.hidden_size * GGML_ACT_BYTES / link)
        expected = gpu_rest.step_time(shape) + layers / model.num_moe_layers * cpu_run.moe.time(b) + hops
        assert cost.step_time(shape) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("hardware", "op_offload"), [("h100-sxm", True), ("h100-sxm", False), ("rtx-3060", True)])
def test_decode_never_gets_faster_as_experts_move_to_the_cpu(hardware: str, op_offload: bool) -> None:
    n = get_model(MODEL).num_layers
    costs = []
    for layers in range(n + 1):
        try:
            costs.append(_resolve(_spec(n_cpu_moe=layers, op_offload=op_offload), hardware).cost)
        except EngineError:  # the 12 GiB card holds the model only from some n_cpu_moe on
            assert not costs
    assert len(costs) > 20
    for shape in DECODES:
        times = [cost.step_time(shape) for cost in costs]
        assert all(b >= a for a, b in itertools.pairwise(times)), (shape, times)
        assert times[-1] > times[0]


def test_op_offload_streams_passes_of_32_tokens() -> None:
    """With op offload, a pass of >= 32 tokens runs the experts on the GPU after copying the ones it
    routes to; fewer tokens (and --no-op-offload) stay on the CPU."""
    on = _resolve(_spec(cpu_moe=True)).cost
    off = _resolve(_spec(cpu_moe=True, op_offload=False)).cost
    assert isinstance(on, ExpertOffloadStepCost) and isinstance(off, ExpertOffloadStepCost)
    for shape in DECODES + PROMPTS:
        same = shape.num_tokens < MIN_STREAM_TOKENS
        assert (on.step_time(shape) == off.step_time(shape)) is same
        assert (on.cpu_read_bytes(shape.num_tokens) == 0.0) is not same


# ---------------------------------------------------------------- E = k: every expert read
@pytest.mark.parametrize("layers", [1, 17, 48])
def test_with_e_equal_k_a_step_reads_every_expert_of_the_cpu_layers(layers: int) -> None:
    """E = k (every expert active): the CPU reads, per decode step, exactly the expert bytes the
    placement put in host RAM; with E > k one token reads k experts per layer."""
    model = get_model(MODEL)
    assert model.moe is not None
    dense_like = model.model_copy(update={"moe": model.moe.model_copy(update={"experts_per_token": model.moe.num_experts})})
    fmt = get_format("q4_k_m")
    hardware = resolve_hardware("h100-sxm")
    for m in (dense_like, model):
        assert m.moe is not None
        cost = resolve_server(_spec(n_cpu_moe=layers, op_offload=False, frontend=FrontendSpec(profile="none")), m, hardware).cost
        assert isinstance(cost, ExpertOffloadStepCost)
        placed = place_experts(m, fmt, 0.0, layers, reason="")
        one_expert = m.expert_params * m.expert_bits(fmt) / 8
        assert placed.cpu_read_bytes == pytest.approx(layers * m.moe.num_experts * one_expert, rel=1e-12)
        for b in (1, 3, 31, 200):
            read = cost.cpu_read_bytes(b)
            if m is dense_like:
                assert read == pytest.approx(placed.cpu_read_bytes, rel=1e-12)
            else:
                assert read < placed.cpu_read_bytes
        if m is model:
            assert cost.cpu_read_bytes(1) == pytest.approx(layers * m.moe.experts_per_token * one_expert, rel=1e-12)


# ---------------------------------------------------------------- --fit and Ollama 0.30
@pytest.mark.parametrize("spec", [LlamaCppSpec(version="b7600", quantization="q4_k_m", ctx_size=4096),
                                  OllamaSpec(version="0.30.0", quantization="q4_k_m")])
def test_fit_keeps_the_fewest_experts_in_ram_that_leave_1_gib(spec: LlamaCppSpec | OllamaSpec) -> None:
    """--fit (llama.cpp's default from b7400, Ollama >= 0.30) on a 12 GiB card: the first N layers'
    experts in RAM with N the least that leaves --fit-target free (weights on the GPU, a 4096-token
    f16 KV cache, the CUDA context); N - 1 would not."""
    model, fmt = get_model(MODEL), get_format("q4_k_m")
    fitted = _resolve(spec)
    n = fitted.notes["n_cpu_moe"]
    assert isinstance(fitted.cost, ExpertOffloadStepCost) and 0 < n < model.num_layers
    card = resolve_hardware("rtx-3060").memory_bytes

    def used(layers: int) -> float:
        return place_experts(model, fmt, 0.0, layers, reason="").gpu_weight_bytes + 4096 * model.kv_bytes_per_token(2) + CUDA_CONTEXT_BYTES

    assert used(n) + FIT_TARGET_BYTES <= card < used(n - 1) + FIT_TARGET_BYTES
    assert fitted.notes["vram_gib"] == round(used(n) / (1 << 30), 2)


def test_ollama_before_030_still_refuses_to_split_an_moe_model() -> None:
    with pytest.raises(EngineError, match="cpu_moe: true"):
        _resolve(OllamaSpec(version="0.12.0", quantization="q4_k_m"))


# ---------------------------------------------------------------- bad input
BASE = """
name: bad
model: {model}
hardware: rtx-3060
workload:
  arrival: {{kind: closed_loop, users: 1}}
  prompt_tokens: {{kind: fixed, value: 128}}
  output_tokens: {{kind: fixed, value: 16}}
  num_requests: 5
servers:
  - {{engine: llama.cpp, version: b7100, quantization: q4_k_m, ctx_size: 4096, {options}}}
"""
BAD = {
    "dense": ("llama-3.1-8b", "cpu_moe: true", ["servers.0", "cpu_moe", "dense", "remove cpu_moe"]),
    "too-many": (MODEL, "n_cpu_moe: 49", ["servers.0", "n_cpu_moe=49", "use n_cpu_moe <= 48"]),
    "attention": (MODEL, r"override_tensor: ['attn_.*=CPU']", ["servers.0", "override_tensor[0]", "not a routed expert",
                                                             r"ffn_.*_exps=CPU"]),
    "half-expert": (MODEL, r"override_tensor: ['ffn_up_exps=CPU']", ["override_tensor[0]", "match all three"]),
    "not-cpu": (MODEL, r"override_tensor: ['exps=CUDA0']", ["override_tensor[0]", "only '=CPU'"]),
    "with-ngl": (MODEL, "cpu_moe: true, n_gpu_layers: 20", ["n_gpu_layers=20", "use n_gpu_layers >= 49"]),
    "too-few": (MODEL, "n_cpu_moe: 4", ["n_cpu_moe >= 19", "12 GiB"]),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_expert_options_get_a_clear_error(tmp_path: Path, case: str) -> None:
    model, options, expected = BAD[case]
    path = tmp_path / f"{case}.yaml"
    path.write_text(BASE.format(model=model, options=options))
    with pytest.raises(ScenarioError) as err:
        check_scenario_file(path)
    message = " ".join(str(err.value).split())
    for fragment in expected:
        assert fragment in message, (fragment, message)


def test_servesim_check_names_the_file_and_never_prints_a_traceback(tmp_path: Path) -> None:
    for case in ("dense", "too-many", "attention"):
        model, options, _ = BAD[case]
        (tmp_path / f"{case}.yaml").write_text(BASE.format(model=model, options=options))
    proc = subprocess.run([sys.executable, "-m", "sim", "check", str(tmp_path)], check=False, capture_output=True, text=True)
    out = " ".join((proc.stderr + proc.stdout).split())
    assert proc.returncode == 2 and "Traceback" not in out
    for case in ("dense", "too-many", "attention"):
        assert f"{case}.yaml" in out


# ---------------------------------------------------------------- the shipped scenario
SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "local" / "qwen3_30b_a3b_cpu_moe_12gb.yaml"


@pytest.mark.parametrize("options", [{}, {"n_gpu_layers": 99}, {"n_cpu_moe": 0}])
def test_every_expert_on_the_12gb_card_is_refused_with_the_fix(options: dict) -> None:
    """The scenario's model on its card with every layer and expert on the GPU does not fit: refused,
    naming the least n_cpu_moe that fits; that value resolves and one less does not."""
    with pytest.raises(EngineError, match=r"n_cpu_moe: (\d+) or more, or cpu_moe: true") as err:
        _resolve(_spec(**options))
    least = int(err.value.args[0].split("n_cpu_moe: ")[1].split(" ")[0])
    assert isinstance(_resolve(_spec(n_cpu_moe=least)).cost, ExpertOffloadStepCost)
    with pytest.raises(EngineError, match=f"use n_cpu_moe >= {least}"):
        _resolve(_spec(n_cpu_moe=least - 1))


def test_the_scenario_shows_the_expert_split_of_each_server() -> None:
    from sim.scenario import load_scenario
    from sim.simulation import resolve_servers

    resolved = resolve_servers(load_scenario(SCENARIO))
    cpu_layers = [r.notes["n_cpu_moe"] for r in resolved]
    assert all(isinstance(getattr(r.cost, "inner", r.cost), ExpertOffloadStepCost) for r in resolved)  # (front end)
    assert cpu_layers[0] == get_model(MODEL).num_layers  # cpu_moe: true
    assert cpu_layers[1:5] == sorted(cpu_layers[1:5], reverse=True)  # n_cpu_moe falling
