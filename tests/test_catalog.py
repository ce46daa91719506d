"""Tests of the hardware / model / weight-format catalogs (sim.catalog)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from sim.catalog import (
    KV_DTYPE_BYTES,
    CatalogError,
    HardwareSpec,
    ModelSpec,
    WeightFormat,
    get_format,
    get_hardware,
    get_model,
    kv_dtype_bytes,
    list_formats,
    list_hardware,
    list_models,
    model_from_hf_config,
)

REQUIRED_HARDWARE = [
    "h100-sxm", "h100-pcie", "h200", "a100-40gb-sxm", "a100-80gb-sxm", "a100-40gb-pcie",
    "a100-80gb-pcie", "l40s", "l4", "a10g", "a40", "v100-sxm2-32gb", "b200", "mi100",
    "rtx-3060", "rtx-3090", "rtx-4060-laptop", "rtx-4070", "rtx-4080", "rtx-4080-laptop",
    "rtx-4090", "rtx-5090", "rtx-6000-ada", "apple-m1-max", "apple-m2-ultra", "apple-m3-max",
    "apple-m4-max", "cpu-generic-16c", "epyc-zen5-2c-vm",
]  # fmt: skip
REQUIRED_MODELS = [
    "llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b", "llama-3.1-70b", "llama-2-7b",
    "llama-2-13b", "qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-3b", "qwen2.5-7b", "qwen2.5-14b",
    "qwen2.5-32b", "qwen2.5-72b", "qwen2.5-coder-1.5b", "qwen2.5-coder-7b",
    "qwen2.5-coder-32b", "mistral-7b", "gemma-2-2b", "gemma-2-9b", "phi-3-mini",
    "smollm2-135m", "smollm2-360m", "smollm2-1.7b", "opt-13b",
]  # fmt: skip
REQUIRED_FORMATS = [
    "bf16", "fp16", "fp8", "awq-int4", "gptq-int4", "q4_0", "q4_k_m", "q5_k_m", "q8_0", "f16",
]  # fmt: skip

# Real GGUF file sizes of Meta-Llama-3-8B-Instruct (same shape as Llama-3.1-8B).
LLAMA3_8B_Q4_K_M_FILE_BYTES = 4_920_739_232
LLAMA3_8B_Q8_0_FILE_BYTES = 8_540_770_592

# Llama-3.1-8B-Instruct's config.json as published on Hugging Face.
LLAMA_3_1_8B_CONFIG: dict[str, Any] = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009],
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "max_position_embeddings": 131072,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.42.3",
    "use_cache": True,
    "vocab_size": 128256,
}

SHAPE_FIELDS = [
    "num_layers", "hidden_size", "num_heads", "num_kv_heads", "head_dim", "intermediate_size",
    "vocab_size", "tie_word_embeddings", "attention_bias", "gated_mlp", "linear_bias",
    "norm_kind", "norms_per_layer", "learned_position_embeddings", "max_position_embeddings",
]  # fmt: skip


def _write_config(directory: Path, config: dict[str, Any]) -> Path:
    """Write ``config`` as ``directory/config.json`` and return its path."""
    path = directory / "config.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


# ------------------------------------------------------------------ catalog contents


def test_every_required_entry_is_present_and_valid() -> None:
    """Every YAML entry validates and the catalogs hold the entries the project needs."""
    hardware_ids = [h.id for h in list_hardware()]
    model_ids = [m.id for m in list_models()]
    format_names = [f.name for f in list_formats()]
    assert set(REQUIRED_HARDWARE) <= set(hardware_ids)
    assert set(REQUIRED_MODELS) <= set(model_ids)
    assert set(REQUIRED_FORMATS) <= set(format_names)
    for ids in (hardware_ids, model_ids, format_names):
        assert len(ids) == len(set(ids))


@pytest.mark.parametrize(
    ("cls", "entries"),
    [(HardwareSpec, list_hardware), (ModelSpec, list_models), (WeightFormat, list_formats)],
)
def test_entries_round_trip_through_validation(cls: type[BaseModel], entries: Any) -> None:
    """Each loaded entry re-validates from its own dump (no coercion surprises)."""
    for spec in entries():
        assert cls.model_validate(spec.model_dump()) == spec


@pytest.mark.parametrize("cls", [HardwareSpec, ModelSpec, WeightFormat])
def test_every_field_has_a_description(cls: type[BaseModel]) -> None:
    """Every field of every catalog model is documented by an attribute docstring."""
    undocumented = [name for name, info in cls.model_fields.items() if not info.description]
    assert undocumented == []


def test_models_are_frozen_and_reject_unknown_keys() -> None:
    """Specs are immutable and typos in YAML keys are errors, not silently dropped."""
    spec = get_hardware("h100-sxm")
    with pytest.raises(ValidationError):
        spec.bandwidth_gb_s = 1.0  # type: ignore[misc]
    with pytest.raises(ValidationError, match="bandwith_gb_s"):
        HardwareSpec.model_validate({**spec.model_dump(), "bandwith_gb_s": 1.0})


def test_every_entry_cites_a_source() -> None:
    """Every hardware figure and model shape points at where it comes from."""
    for spec in [*list_hardware(), *list_models(), *list_formats()]:
        assert "http" in spec.source


# ------------------------------------------------------------------ models


@pytest.mark.parametrize(
    ("model_id", "published_total"),
    [
        ("llama-3.1-8b", 8_030_261_248),
        ("qwen2.5-7b", 7_615_616_512),
        ("smollm2-135m", 134_515_008),
        ("llama-2-7b", 6_738_415_616),
        ("gemma-2-2b", 2_614_341_888),
    ],
)
def test_num_params_matches_published_totals(model_id: str, published_total: int) -> None:
    """Parameter totals equal the counts published for the checkpoints."""
    assert get_model(model_id).num_params == published_total


def test_matmul_and_head_params_llama_3_1_8b() -> None:
    """GEMM weights exclude embedding, head, norms; the head is vocab x hidden."""
    model = get_model("llama-3.1-8b")
    per_layer = 2 * 4096 * (4096 + 1024) + 3 * 4096 * 14336
    assert model.num_layer_matmul_params == 32 * per_layer
    assert model.num_lm_head_params == 128256 * 4096
    norms = 32 * 2 * 4096 + 4096
    assert model.num_params == model.num_layer_matmul_params + 2 * model.num_lm_head_params + norms


def test_ungated_mlp_counts_two_matrices() -> None:
    """OPT's MLP has fc1 and fc2 only, so it has two MLP matrices per layer, not three."""
    model = get_model("opt-13b")
    assert not model.gated_mlp
    assert model.num_layer_matmul_params == 40 * (4 * 5120**2 + 2 * 5120 * 20480)


def test_kv_bytes_and_attention_flops_llama_3_1_8b() -> None:
    """KV bytes per token and attention FLOPs per pair follow the GQA shape."""
    model = get_model("llama-3.1-8b")
    assert model.kv_bytes_per_token(2) == 131072
    assert model.kv_bytes_per_token(kv_dtype_bytes("fp8")) == 65536
    assert model.attention_flops_per_pair == 4 * 32 * 32 * 128


def test_weight_bytes_match_real_gguf_files() -> None:
    """GGUF weight sizes land within 3% of real Llama-3-8B files."""
    model = get_model("llama-3-8b")
    q4 = model.weight_bytes(get_format("q4_k_m"))
    q8 = model.weight_bytes(get_format("q8_0"))
    assert q4 == pytest.approx(LLAMA3_8B_Q4_K_M_FILE_BYTES, rel=0.03)
    assert q8 == pytest.approx(LLAMA3_8B_Q8_0_FILE_BYTES, rel=0.03)


@pytest.mark.parametrize("model_id", ["llama-3.1-8b", "smollm2-135m", "opt-13b", "gemma-2-2b"])
def test_sixteen_bit_weight_bytes_are_two_per_param(model_id: str) -> None:
    """At 16 bits everywhere, weights take exactly 2 bytes per parameter (tied counted once)."""
    model = get_model(model_id)
    assert model.weight_bytes(get_format("bf16")) == 2 * model.num_params
    assert model.weight_bytes(get_format("f16")) == 2 * model.num_params


def test_quantized_formats_order_by_size() -> None:
    """Fewer bits per weight means fewer bytes; AWQ keeps its 16-bit head."""
    model = get_model("llama-3.1-8b")
    sizes = {f.name: model.weight_bytes(f) for f in list_formats()}
    assert sizes["q4_0"] < sizes["q4_k_m"] < sizes["q5_k_m"] < sizes["q8_0"] < sizes["bf16"]
    assert sizes["q4_k_m"] < sizes["awq-int4"] < sizes["fp8"] < sizes["bf16"]
    head_and_embedding = 2 * model.num_lm_head_params * 2
    assert sizes["awq-int4"] > head_and_embedding


def test_model_rejects_heads_that_do_not_group() -> None:
    """Query heads must be a multiple of KV heads."""
    fields = get_model("llama-3.1-8b").model_dump() | {"num_kv_heads": 5}
    with pytest.raises(ValidationError, match="num_kv_heads"):
        ModelSpec.model_validate(fields)


# ------------------------------------------------------------------ Hugging Face configs


def test_hf_config_round_trip_llama_3_1_8b(tmp_path: Path) -> None:
    """A real Llama-3.1-8B config.json yields the catalog entry's shape."""
    directory = tmp_path / "Llama-3.1-8B-Instruct"
    directory.mkdir()
    config = {**LLAMA_3_1_8B_CONFIG, "_name_or_path": "meta-llama/Llama-3.1-8B-Instruct"}
    spec = model_from_hf_config(_write_config(directory, config))
    catalog = get_model("llama-3.1-8b")
    for field in SHAPE_FIELDS:
        assert getattr(spec, field) == getattr(catalog, field), field
    assert spec.num_params == 8_030_261_248
    assert spec.family == "llama"
    assert spec.id == "llama-3.1-8b-instruct"


def test_hf_config_qwen2_gets_biases_and_explicit_id(tmp_path: Path) -> None:
    """Qwen2 configs imply q/k/v biases; an explicit id wins."""
    config = {
        "model_type": "qwen2", "hidden_size": 3584, "intermediate_size": 18944,
        "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4,
        "vocab_size": 152064, "max_position_embeddings": 32768, "tie_word_embeddings": False,
        "_name_or_path": "Qwen/Qwen2.5-7B-Instruct",
    }  # fmt: skip
    spec = model_from_hf_config(str(_write_config(tmp_path, config)), id="my-qwen")
    assert spec.id == "my-qwen"
    assert spec.attention_bias
    assert spec.hf_name == "Qwen/Qwen2.5-7B-Instruct"
    assert spec.num_params == 7_615_616_512


def test_hf_config_gemma2_defaults(tmp_path: Path) -> None:
    """Gemma 2 ties embeddings by default and has four norms per block."""
    config = {
        "model_type": "gemma2", "hidden_size": 2304, "intermediate_size": 9216,
        "num_attention_heads": 8, "num_hidden_layers": 26, "num_key_value_heads": 4,
        "head_dim": 256, "vocab_size": 256000, "max_position_embeddings": 8192,
    }  # fmt: skip
    spec = model_from_hf_config(_write_config(tmp_path, config), id="g")
    assert spec.tie_word_embeddings
    assert spec.norms_per_layer == 4
    assert spec.num_params == get_model("gemma-2-2b").num_params


def test_hf_config_defaults_kv_heads_and_head_dim(tmp_path: Path) -> None:
    """Without num_key_value_heads / head_dim the config is MHA with hidden/heads heads."""
    config = {k: v for k, v in LLAMA_3_1_8B_CONFIG.items() if k not in {"num_key_value_heads"}}
    del config["tie_word_embeddings"]
    spec = model_from_hf_config(_write_config(tmp_path, config), id="x")
    assert spec.num_kv_heads == 32
    assert spec.head_dim == 128
    assert not spec.tie_word_embeddings


def test_hf_config_missing_key_names_file_and_key(tmp_path: Path) -> None:
    """A config without a required key fails naming the file, the key and the fix."""
    config = {k: v for k, v in LLAMA_3_1_8B_CONFIG.items() if k != "intermediate_size"}
    path = _write_config(tmp_path, config)
    with pytest.raises(CatalogError) as info:
        model_from_hf_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "intermediate_size" in message
    assert "config.json" in message


def test_hf_config_missing_or_broken_file_names_file(tmp_path: Path) -> None:
    """A missing file or invalid JSON fails naming the file."""
    missing = tmp_path / "nope" / "config.json"
    with pytest.raises(CatalogError, match="does not exist"):
        model_from_hf_config(missing)
    broken = tmp_path / "config.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(CatalogError, match="not readable JSON") as info:
        model_from_hf_config(broken)
    assert str(broken) in str(info.value)


def test_hf_config_inconsistent_values_raise_catalog_error(tmp_path: Path) -> None:
    """Values that violate the spec's invariants surface as CatalogError naming the file."""
    config = LLAMA_3_1_8B_CONFIG | {"num_key_value_heads": 5}
    path = _write_config(tmp_path, config)
    with pytest.raises(CatalogError, match="invalid values") as info:
        model_from_hf_config(path)
    assert str(path) in str(info.value)


# ------------------------------------------------------------------ lookup


@pytest.mark.parametrize(
    ("getter", "query", "expected"),
    [
        (get_hardware, "RTX4090", "rtx-4090"),
        (get_hardware, "rtx_4090", "rtx-4090"),
        (get_hardware, "H100", "h100-sxm"),
        (get_hardware, "m1-max", "apple-m1-max"),
        (get_model, "llama-3-8b", "llama-3.1-8b"),
        (get_model, "llama3.1:8b", "llama-3.1-8b"),
        (get_model, "Qwen/Qwen2.5-7B-Instruct", "qwen2.5-7b"),
        (get_model, "LLAMA-3-70B", "llama-3.1-70b"),
        (get_model, "qwen2.5:0.5b", "qwen2.5-0.5b"),
        (get_format, "Q4_K_M", "q4_k_m"),
        (get_format, "awq", "awq-int4"),
    ],
)
def test_lookup_is_case_insensitive_with_aliases(getter: Any, query: str, expected: str) -> None:
    """Ids match regardless of case and separators; aliases resolve to their entry."""
    spec = getter(query)
    assert getattr(spec, "id", getattr(spec, "name", None)) == expected


@pytest.mark.parametrize(
    ("getter", "query", "suggestion", "valid"),
    [
        (get_hardware, "rtx-4091", "rtx-4090", "h100-sxm"),
        (get_model, "llama-3.1-9b", "llama-3.1-8b", "qwen2.5-7b"),
        (get_format, "q4_k_s", "q4_k_m", "bf16"),
    ],
)
def test_unknown_id_lists_suggestions(getter: Any, query: str, suggestion: str, valid: str) -> None:
    """An unknown id raises CatalogError naming it, close matches and the valid ids."""
    with pytest.raises(CatalogError) as info:
        getter(query)
    message = str(info.value)
    assert repr(query) in message
    assert "Did you mean" in message
    assert suggestion in message.split("Valid ids")[0]
    assert valid in message


def test_catalog_error_is_a_value_error() -> None:
    """Callers can catch CatalogError as ValueError."""
    with pytest.raises(ValueError):
        get_hardware("no-such-gpu")


# ------------------------------------------------------------------ hardware


def test_peak_flops_units_and_fallbacks() -> None:
    """peak_flops returns FLOP/s and falls back fp8->fp16, int8->fp16, bf16<->fp16."""
    h100 = get_hardware("h100-sxm")
    assert h100.peak_flops("bf16") == pytest.approx(989.5e12)
    assert h100.peak_flops("BFloat16") == h100.peak_flops("bf16")
    a100 = get_hardware("a100-80gb-sxm")
    assert "fp8" not in a100.tflops
    assert a100.peak_flops("fp8") == a100.peak_flops("fp16")
    m1 = get_hardware("apple-m1-max")
    assert m1.peak_flops("int8") == m1.peak_flops("fp16") == pytest.approx(10.4e12)
    assert m1.peak_flops("bf16") == m1.peak_flops("fp16")
    v100 = get_hardware("v100-sxm2-32gb")
    assert v100.peak_flops("bf16") == v100.peak_flops("fp16")


def test_peak_flops_without_fallback_raises() -> None:
    """fp32 never falls back, and unknown dtypes are rejected."""
    only_fp16 = get_hardware("h100-sxm").model_copy(update={"tflops": {"fp16": 1.0}})
    with pytest.raises(CatalogError, match="fp32"):
        only_fp16.peak_flops("fp32")
    with pytest.raises(CatalogError, match="valid dtypes"):
        only_fp16.peak_flops("fp4")


def test_hardware_rejects_unknown_dtype_keys_and_nonpositive_values() -> None:
    """tflops keys come from the fixed dtype set and values are positive."""
    base = get_hardware("l4").model_dump()
    with pytest.raises(ValidationError):
        HardwareSpec.model_validate(base | {"tflops": {"tf32": 60.0}})
    with pytest.raises(ValidationError):
        HardwareSpec.model_validate(base | {"tflops": {"fp16": 0.0}})
    with pytest.raises(ValidationError, match="cores"):
        HardwareSpec.model_validate(base | {"kind": "cpu", "cores": None})


def test_bandwidth_and_memory_physically_sane() -> None:
    """Bandwidth and memory are positive and in plausible ranges; units convert correctly."""
    h100 = get_hardware("h100-sxm")
    assert h100.bandwidth_gb_s == 3350
    assert h100.bandwidth_bytes_per_s == 3.35e12
    assert h100.memory_bytes == 80 * 2**30
    for spec in list_hardware():
        assert spec.memory_gib > 0 and spec.bandwidth_gb_s > 0
        if spec.kind == "cpu":
            assert 5 <= spec.bandwidth_gb_s <= 1000
        else:
            assert 100 <= spec.bandwidth_gb_s <= 10_000, spec.id
            assert 4 <= spec.memory_gib <= 256, spec.id
        # Tensor/matrix peaks are never below the plain fp32 rate.
        for dtype in ("fp16", "bf16", "fp8", "int8"):
            assert spec.peak_flops(dtype) >= spec.peak_flops("fp32"), (spec.id, dtype)


def test_cpu_specs_have_cores() -> None:
    """CPU peaks are per-core rates times cores, so the core count is required."""
    assert get_hardware("epyc-zen5-2c-vm").cores == 2
    assert get_hardware("cpu-generic-16c").cores == 16


# ------------------------------------------------------------------ formats and KV dtypes


def test_format_families_engines_and_compute_dtypes() -> None:
    """GGUF formats load in llama.cpp/Ollama; W4A16 computes in fp16; quants run int8 MMQ."""
    for fmt in list_formats():
        if fmt.family == "gguf":
            assert set(fmt.engines) == {"llama.cpp", "ollama"}, fmt.name
        elif fmt.name == "bf16":  # safetensors for vLLM, and GGUF's BF16 type
            assert set(fmt.engines) == {"vllm", "llama.cpp", "ollama"}
        else:
            assert fmt.engines == ("vllm",), fmt.name
    assert get_format("awq-int4").compute_dtype == "fp16"
    assert get_format("gptq-int4").compute_dtype == "fp16"
    assert get_format("q4_k_m").compute_dtype == "int8"
    assert get_format("f16").compute_dtype == "fp16"
    assert get_format("fp8").compute_dtype == "fp8"
    assert get_format("awq-int4").bits_per_weight == 4 + (16 + 4) / 128
    assert get_format("q4_0").bits_per_weight == 18 * 8 / 32
    assert get_format("q8_0").bits_per_weight == 34 * 8 / 32


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("auto", 2.0), ("fp16", 2.0), ("bf16", 2.0), ("f16", 2.0), ("fp8", 1.0),
        ("fp8_e4m3", 1.0), ("FP8-E5M2", 1.0), ("q8_0", 34 / 32), ("q4_0", 18 / 32),
    ],
)  # fmt: skip
def test_kv_dtype_bytes(name: str, expected: float) -> None:
    """KV-cache dtype names map to bytes per element (GGUF blocks include their scale)."""
    assert kv_dtype_bytes(name) == expected


def test_kv_dtype_unknown_lists_choices_and_table_is_read_only() -> None:
    """An unknown KV dtype names the valid choices; the table cannot be mutated."""
    with pytest.raises(CatalogError, match="valid choices: auto"):
        kv_dtype_bytes("int3")
    with pytest.raises(TypeError):
        KV_DTYPE_BYTES["int3"] = 0.375  # type: ignore[index]
