"""Mixture-of-experts, MLA and sliding-window fields of a Hugging Face ``config.json``.

Read for Mixtral, Qwen2-MoE, Qwen3-MoE, DeepSeek-V2/V3 and gpt-oss (PARALLELISM.md §4.1). Any
config carrying an expert or attention field that servesim does not understand for its
``model_type`` is refused: pricing such a model as dense would be silently wrong (Mixtral priced
as ~7 B parameters, "fitting" a 24 GB card).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sim.catalog.base import CatalogError

__all__ = ["MOE_FAMILIES", "moe_fields"]

MOE_FAMILIES = ("mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v2", "deepseek_v3", "gpt_oss")
"""``model_type`` values whose expert and attention fields are read."""

_SUSPECT = re.compile(
    r"expert|moe|router|lora_rank|rope_head_dim|nope_head_dim|v_head_dim|layer_types|mamba|ssm|"
    r"linear_attn|linear_attention|attention_type|first_k_dense|decoder_sparse|mlp_only|nextn|"
    r"n_group|topk|sparse|indexer|kv_lora|q_lora|block_sparse|local_attention|chunk_size"
)
"""Keys that change the shape or the cost of a model beyond a dense GQA transformer."""

_IGNORED_EVERYWHERE = {"output_router_logits", "router_aux_loss_coef", "router_z_loss_coef"}
"""Training-only keys: they change no inference cost."""

_UNDERSTOOD: Mapping[str, frozenset[str]] = {
    "mixtral": frozenset({"num_local_experts", "num_experts_per_tok"}),
    "qwen2_moe": frozenset({"num_experts", "num_experts_per_tok", "moe_intermediate_size",
                            "shared_expert_intermediate_size", "decoder_sparse_step", "mlp_only_layers",
                            "norm_topk_prob"}),
    "qwen3_moe": frozenset({"num_experts", "num_experts_per_tok", "moe_intermediate_size",
                            "decoder_sparse_step", "mlp_only_layers", "norm_topk_prob"}),
    "deepseek_v2": frozenset({"n_routed_experts", "num_experts_per_tok", "moe_intermediate_size", "n_shared_experts",
                              "first_k_dense_replace", "moe_layer_freq", "kv_lora_rank", "q_lora_rank",
                              "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim", "n_group", "topk_group",
                              "topk_method", "norm_topk_prob", "routed_scaling_factor", "scoring_func",
                              "num_nextn_predict_layers", "ep_size"}),
    "gpt_oss": frozenset({"num_local_experts", "num_experts_per_tok", "experts_per_token", "layer_types"}),
}
_UNDERSTOOD = {**_UNDERSTOOD, "deepseek_v3": _UNDERSTOOD["deepseek_v2"]}


def _active(value: Any) -> bool:
    """A key whose value changes the model: not None, False, 0 or empty."""
    if value is None or value is False:
        return False
    if isinstance(value, (int, float)) and value == 0:
        return False
    return not (isinstance(value, (list, dict, str)) and not value)


def _refuse_unknown(config: Mapping[str, Any], path: Path, model_type: str) -> None:
    understood = _UNDERSTOOD.get(model_type, frozenset())
    for key, value in config.items():
        if key in understood or key in _IGNORED_EVERYWHERE or not _SUSPECT.search(key):
            continue
        if key == "layer_types" and isinstance(value, list) and all(v == "full_attention" for v in value):
            continue
        if key in ("decoder_sparse_step", "moe_layer_freq") and value == 1:
            continue
        if not _active(value):
            continue
        raise CatalogError(
            f"model config {str(path)!r}: field {key!r} = {value!r} (experts or a non-standard attention) is not "
            f"understood for model_type {model_type!r}, and servesim will not price such a model as dense. "
            f"Supported mixture-of-experts / MLA families: {', '.join(MOE_FAMILIES)}; or give a catalog "
            "model id, or remove the field if the model is in fact a dense grouped-query transformer"
        )


def _get(config: Mapping[str, Any], path: Path, *keys: str) -> Any:
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    raise CatalogError(f"model config {str(path)!r} lacks {' or '.join(map(repr, keys))}; add it from the model's config.json")


def moe_fields(config: Mapping[str, Any], path: Path, model_type: str) -> dict[str, Any]:
    """ModelSpec fields (``moe``, ``mla``, sliding window, head sizes) a config adds to the dense ones."""
    _refuse_unknown(config, path, model_type)
    if model_type not in MOE_FAMILIES:
        return {}
    layers = int(_get(config, path, "num_hidden_layers"))
    out: dict[str, Any] = {}
    moe: dict[str, Any] = {
        "num_experts": _get(config, path, "num_local_experts", "num_experts", "n_routed_experts"),
        "experts_per_token": _get(config, path, "num_experts_per_tok", "experts_per_token"),
    }
    if model_type in ("mixtral", "gpt_oss"):
        moe["expert_intermediate_size"] = _get(config, path, "intermediate_size")
    else:
        moe["expert_intermediate_size"] = _get(config, path, "moe_intermediate_size")
    if model_type.startswith("qwen"):
        step = int(config.get("decoder_sparse_step") or 1)
        only = set(config.get("mlp_only_layers") or [])
        moe["dense_layers"] = tuple(i for i in range(layers) if i in only or (i + 1) % step != 0)
        moe["shared_intermediate_size"] = int(config.get("shared_expert_intermediate_size") or 0)
        if model_type == "qwen2_moe":
            out["attention_bias"] = True
    if model_type.startswith("deepseek"):
        first = int(config.get("first_k_dense_replace") or 0)
        freq = int(config.get("moe_layer_freq") or 1)
        moe["dense_layers"] = tuple(i for i in range(layers) if i < first or i % freq != 0)
        moe["shared_intermediate_size"] = int(config.get("n_shared_experts") or 0) * int(moe["expert_intermediate_size"])
        out["mla"] = {
            "kv_lora_rank": _get(config, path, "kv_lora_rank"),
            "qk_rope_head_dim": _get(config, path, "qk_rope_head_dim"),
            "qk_nope_head_dim": _get(config, path, "qk_nope_head_dim"),
            "v_head_dim": _get(config, path, "v_head_dim"),
            "q_lora_rank": config.get("q_lora_rank"),
        }
        out["head_dim"] = int(out["mla"]["qk_nope_head_dim"]) + int(out["mla"]["qk_rope_head_dim"])
        out["num_kv_heads"] = config["num_attention_heads"]  # MLA: every head has its K/V (from the latent)
    if model_type == "gpt_oss":
        moe["expert_bias"] = True
        quant = config.get("quantization_config") or {}
        if str(quant.get("quant_method", "")).lower() == "mxfp4":
            moe["expert_bits_per_weight"] = 4.25  # E2M1 + one E8M0 scale per 32 (model card)
        types = config.get("layer_types") or []
        bad = sorted({t for t in types if t not in ("sliding_attention", "full_attention")})
        if bad:
            raise CatalogError(f"model config {str(path)!r}: layer_types {bad} not understood; servesim knows sliding_attention and full_attention")
        sliding = sum(1 for t in types if t == "sliding_attention")
        if sliding:
            out["sliding_window"] = _get(config, path, "sliding_window")
            out["sliding_layers"] = sliding
    out["moe"] = moe
    return out
