"""Engine presets: Ollama, llama.cpp and vLLM defaults by version, resolved against memory.

This module turns a server spec (engine + version + overrides, or a bare architecture) plus a
model and hardware into the policy the scheduler runs and the cost model that prices its
passes. Defaults and their version history follow ENGINES.md; memory checks reproduce the
engines' own start-up failures (weights that do not fit, a KV cache too small for one request)
as errors that say what to change.

:mod:`.base` holds what every engine shares (the resolved server, memory arithmetic, checks);
:mod:`.pricing` builds the cost model of a server's passes (one GPU or spread over several);
:mod:`.slots` the slot engines (Ollama, llama.cpp, bare serial decode and single queue);
:mod:`.vllm` vLLM and the bare paged architecture; :mod:`.resolve` the entry point
:func:`resolve_server` (front end and cost-profile notes added there).
"""

from __future__ import annotations

from sim.engines.base import (  # noqa: F401
    CUDA_CONTEXT_BYTES,
    ENGINE_KV_DTYPES,
    GIB,
    MIN_MODEL_LEN,
    EngineError,
    ResolvedServer,
    ServerSpecT,
    _activation_bytes,
    _kv_bytes,
    _version,
    _weights_read_per_pass,
)
from sim.engines.pricing import build_cost  # noqa: F401
from sim.engines.resolve import resolve_server  # noqa: F401
from sim.engines.slots import AUTO_PARALLEL_BUILD, CONTEXT_SHIFT_OFF_BUILD  # noqa: F401

__all__ = [
    "AUTO_PARALLEL_BUILD",
    "CONTEXT_SHIFT_OFF_BUILD",
    "CUDA_CONTEXT_BYTES",
    "ENGINE_KV_DTYPES",
    "EngineError",
    "GIB",
    "MIN_MODEL_LEN",
    "ResolvedServer",
    "ServerSpecT",
    "build_cost",
    "resolve_server",
]
