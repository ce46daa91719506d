"""Weight formats (bits per weight, GEMM dtype) and KV-cache dtypes (bytes per element)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal

from pydantic import (
    Field,
    PositiveFloat,
)

from sim.catalog.base import CatalogError, Engine, _Spec

# --------------------------------------------------------------------------------------------
# Weight formats
# --------------------------------------------------------------------------------------------


class WeightFormat(_Spec):
    """How a checkpoint stores its weights, and which tensor-core dtype runs its GEMMs."""

    name: str = Field(min_length=1)
    """User-facing format name, e.g. ``"q4_k_m"`` or ``"awq-int4"``."""
    family: Literal["native", "awq", "gptq", "gguf", "fp8"]
    """Quantisation scheme the format belongs to."""
    bits_per_weight: PositiveFloat
    """Effective bits per transformer-layer weight, including scales and zero points."""
    embedding_bits_per_weight: PositiveFloat
    """Effective bits per weight of the token (and learned position) embedding table."""
    lm_head_bits_per_weight: PositiveFloat
    """Effective bits per weight of the output projection (lm_head / GGUF ``output.weight``).

    A tied embedding is stored once, at this width (llama.cpp quantises a tied
    ``token_embd`` with the output tensor's type)."""
    compute_dtype: Literal["fp16", "bf16", "fp8", "int8"]
    """Dtype whose tensor-core peak bounds the GEMMs (W4A16 -> fp16; GGUF quants on CUDA use
    llama.cpp's int8 MMQ kernels -> int8)."""
    engines: tuple[Engine, ...] = Field(min_length=1)
    """Engines that load this format."""
    source: str = Field(min_length=1)
    """URL(s) documenting the storage layout and the bits-per-weight arithmetic."""
    notes: str = ""
    """The bits-per-weight arithmetic and its caveats."""
    aliases: tuple[str, ...] = ()
    """Other names accepted by :func:`get_format`."""


# --------------------------------------------------------------------------------------------
# KV-cache dtypes
# --------------------------------------------------------------------------------------------

KV_DTYPE_BYTES: Mapping[str, float] = MappingProxyType(
    {
        "auto": 2.0,
        "fp16": 2.0,
        "bf16": 2.0,
        "f16": 2.0,
        "f32": 4.0,
        "fp32": 4.0,
        "fp8": 1.0,
        "fp8_e4m3": 1.0,
        "fp8_e5m2": 1.0,
        "q8_0": 34 / 32,
        "q4_0": 18 / 32,
        "q4_1": 20 / 32,
        "q5_0": 22 / 32,
        "q5_1": 24 / 32,
    }
)
"""Bytes per cached K/V element for vLLM ``--kv-cache-dtype`` and llama.cpp ``--cache-type-k/v``.

``auto`` is vLLM's default (the model dtype, 2 bytes for bf16/fp16 checkpoints). GGUF block
types store 32 elements per block plus scales: ``q8_0`` = 32 int8 + one fp16 scale = 34 bytes,
``q4_0`` = 16 bytes of nibbles + fp16 scale = 18, ``q4_1``/``q5_0``/``q5_1`` = 20/22/24.
Read-only."""


def kv_dtype_bytes(name: str) -> float:
    """Bytes per cached K/V element for a KV-cache dtype name.

    Args:
        name: A key of :data:`KV_DTYPE_BYTES`, case-insensitive (``-`` is read as ``_``).

    Returns:
        Bytes per element.

    Raises:
        CatalogError: If the name is unknown; the message lists the valid names.
    """
    key = name.strip().lower().replace("-", "_")
    if key not in KV_DTYPE_BYTES:
        raise CatalogError(
            f"unknown KV-cache dtype {name!r}; valid choices: {', '.join(KV_DTYPE_BYTES)}"
        )
    return KV_DTYPE_BYTES[key]


