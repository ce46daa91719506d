"""Shared vocabulary of the catalog: dtypes, device classes, engines, the error, the spec base."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Dtype = Literal["fp32", "fp16", "bf16", "fp8", "int8"]
"""Dtypes that a peak-throughput figure may be given for."""

HardwareKind = Literal[
    "datacenter_gpu", "consumer_gpu", "workstation_gpu", "laptop_gpu", "apple_silicon", "cpu"
]
"""Broad class of a device."""

Engine = Literal["vllm", "llama.cpp", "ollama"]
"""Serving engines the simulator models."""


class CatalogError(ValueError):
    """An unknown catalog id, an invalid catalog entry or an unreadable model config."""


class _Spec(BaseModel):
    """Base of all catalog models: strict keys, immutable, fields documented in place."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


