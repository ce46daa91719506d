"""Catalogs of hardware, models and weight formats consumed by the roofline cost model.

Example:
    >>> from sim.catalog import get_hardware, get_model, get_format
    >>> gpu, model, fmt = get_hardware("rtx4090"), get_model("llama3.1:8b"), get_format("Q4_K_M")
    >>> round(model.weight_bytes(fmt) / gpu.bandwidth_bytes_per_s * 1e3, 1)  # ms per token
    4.9
"""

from __future__ import annotations

from sim.catalog.specs import (
    KV_DTYPE_BYTES,
    CatalogError,
    Dtype,
    HardwareKind,
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

__all__ = [
    "KV_DTYPE_BYTES",
    "CatalogError",
    "Dtype",
    "HardwareKind",
    "HardwareSpec",
    "ModelSpec",
    "WeightFormat",
    "get_format",
    "get_hardware",
    "get_model",
    "kv_dtype_bytes",
    "list_formats",
    "list_hardware",
    "list_models",
    "model_from_hf_config",
]
