"""Catalogs of hardware, models and weight formats consumed by the roofline cost model.

Each kind of fact is kept in a YAML file next to this package and validated into a frozen
pydantic model on first use: ``hardware.yaml`` -> :class:`HardwareSpec` (:mod:`.hardware`),
``models.yaml`` -> :class:`ModelSpec` (:mod:`.models`; or a Hugging Face ``config.json`` read by
:mod:`.hf_config`), ``formats.yaml`` -> :class:`WeightFormat` (:mod:`.formats`). Lookups
(:mod:`.tables`) are case-insensitive and ignore ``-``, ``_``, ``:`` and spaces. A scenario's
model and hardware references are resolved by :mod:`.resolve`.

Example:
    >>> from sim.catalog import get_hardware, get_model, get_format
    >>> gpu, model, fmt = get_hardware("rtx4090"), get_model("llama3.1:8b"), get_format("Q4_K_M")
    >>> round(model.weight_bytes(fmt) / gpu.bandwidth_bytes_per_s * 1e3, 1)  # ms per token
    4.9
"""

from __future__ import annotations

from sim.catalog.base import CatalogError, Dtype, Engine, HardwareKind  # noqa: F401
from sim.catalog.formats import KV_DTYPE_BYTES, WeightFormat, kv_dtype_bytes  # noqa: F401
from sim.catalog.hardware import HardwareSpec  # noqa: F401
from sim.catalog.hf_config import model_from_hf_config  # noqa: F401
from sim.catalog.models import ModelSpec  # noqa: F401
from sim.catalog.resolve import resolve_hardware, resolve_model  # noqa: F401
from sim.catalog.tables import (  # noqa: F401
    get_format,
    get_hardware,
    get_model,
    list_formats,
    list_hardware,
    list_models,
)

__all__ = [
    "Dtype",
    "CatalogError",
    "Engine",
    "HardwareKind",
    "HardwareSpec",
    "KV_DTYPE_BYTES",
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
    "resolve_hardware",
    "resolve_model",
]
