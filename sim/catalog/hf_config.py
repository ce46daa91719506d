"""A model read from a Hugging Face ``config.json``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import (
    ValidationError,
)

from sim.catalog.base import CatalogError
from sim.catalog.hf_moe import moe_fields
from sim.catalog.models import ModelSpec

# --------------------------------------------------------------------------------------------
# Hugging Face config.json
# --------------------------------------------------------------------------------------------

_TIED_BY_DEFAULT = frozenset({"gemma", "gemma2", "opt"})
"""``model_type`` values whose config class defaults ``tie_word_embeddings`` to True."""

_HF_FIX = (
    "pass the path of a Hugging Face config.json "
    "(https://huggingface.co/<org>/<model>/resolve/main/config.json)"
)


def _read_hf_config(path: Path) -> dict[str, Any]:
    """Parse a config.json, unwrapping a multimodal ``text_config`` if present."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CatalogError(f"model config {str(path)!r} does not exist; {_HF_FIX}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        message = f"model config {str(path)!r} is not readable JSON ({exc}); {_HF_FIX}"
        raise CatalogError(message) from exc
    if not isinstance(config, dict):
        raise CatalogError(f"model config {str(path)!r} is not a JSON object; {_HF_FIX}")
    if "num_hidden_layers" not in config and isinstance(config.get("text_config"), dict):
        config = {**config["text_config"], "model_type": config.get("model_type", "")}
    return config


def _require(config: Mapping[str, Any], path: Path, key: str) -> Any:
    """Value of a mandatory config key, or a CatalogError naming the file and the key."""
    if key not in config or config[key] is None:
        raise CatalogError(
            f"model config {str(path)!r} lacks required key {key!r}; add it (see the model's "
            f"config.json on Hugging Face) or {_HF_FIX}"
        )
    return config[key]


def _default_id(config: Mapping[str, Any]) -> str | None:
    """Catalog id for a config: the last part of its ``_name_or_path`` (None without one: a
    folder name would silently miss every fitted cost profile, so the scenario must give ``id``)."""
    name = str(config.get("_name_or_path") or "").strip().rstrip("/")
    return name.rsplit("/", 1)[-1].lower() if name else None


def _ask_for_id(path: Path) -> CatalogError:
    return CatalogError(
        f"model config {str(path)!r} has no _name_or_path to name the model by; give it an id, "
        f"e.g. model: {{hf_config: {path.name}, id: llama-3.1-8b}} (the id picks the fitted cost "
        "profile: a catalog id such as llama-3.1-8b, or a new name for the class prior)"
    )


def _hf_fields(config: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """ModelSpec fields read from a config (architecture keys only)."""
    model_type = str(config.get("model_type") or "unknown").lower()
    hidden = _require(config, path, "hidden_size")
    heads = _require(config, path, "num_attention_heads")
    is_opt = model_type == "opt"
    fields: dict[str, Any] = {
        "family": model_type,
        "num_layers": _require(config, path, "num_hidden_layers"),
        "hidden_size": hidden,
        "num_heads": heads,
        "num_kv_heads": config.get("num_key_value_heads") or heads,
        "head_dim": config.get("head_dim") or hidden // heads,
        "intermediate_size": _require(config, path, "ffn_dim" if is_opt else "intermediate_size"),
        "vocab_size": _require(config, path, "vocab_size"),
        "tie_word_embeddings": config.get("tie_word_embeddings", model_type in _TIED_BY_DEFAULT),
        "attention_bias": model_type == "qwen2" or bool(config.get("attention_bias", False)),
        "max_position_embeddings": _require(config, path, "max_position_embeddings"),
        "norms_per_layer": 4 if model_type in {"gemma2", "gemma3"} else 2,
    }
    fields |= moe_fields(config, path, model_type)
    if is_opt:
        fields |= {
            "gated_mlp": False,
            "linear_bias": bool(config.get("enable_bias", True)),
            "norm_kind": "layernorm",
            "learned_position_embeddings": fields["max_position_embeddings"] + 2,
        }
    return fields


def model_from_hf_config(path: str | Path, id: str | None = None) -> ModelSpec:  # noqa: A002
    """Build a :class:`ModelSpec` from a Hugging Face ``config.json``.

    Understands the keys of Llama, Qwen2, Mistral, Gemma 2, Phi-3 and OPT configs:
    ``num_key_value_heads`` defaults to the head count, ``head_dim`` to
    ``hidden_size // num_attention_heads``, ``tie_word_embeddings`` to the config class's
    default (True for Gemma and OPT, else False); Qwen2 always has q/k/v biases; Gemma 2 has
    four norms per block; OPT reads ``ffn_dim`` and has biases, LayerNorms and learned
    positions. A multimodal config's ``text_config`` is used when present.

    Args:
        path: Path of the ``config.json``.
        id: Catalog id to give the spec; default: the last part of ``_name_or_path``,
            lower-cased (a config without one needs ``id``).

    Returns:
        The model spec (``source`` is the file path).

    Raises:
        CatalogError: If the file is missing or not JSON, a required key is absent, or the
            values are inconsistent; the message names the file, the key and the fix.
    """
    path = Path(path)
    config = _read_hf_config(path)
    fields = _hf_fields(config, path)
    spec_id = id or _default_id(config)
    try:
        spec = ModelSpec(
            id=spec_id or "unnamed",
            hf_name=str(config.get("_name_or_path") or spec_id or "unnamed"),
            source=str(path),
            **fields,
        )
    except ValidationError as exc:
        raise CatalogError(f"model config {str(path)!r} has invalid values: {exc}") from exc
    if spec_id is None:
        raise _ask_for_id(path)
    return spec
