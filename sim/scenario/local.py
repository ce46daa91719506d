"""The models of a local server: several models on one Ollama box, and llama-swap (issue 20)."""

from __future__ import annotations

from typing import Self

from pydantic import Field, model_validator

from sim.scenario.base import Spec


class OllamaModelSpec(Spec):
    """One model an Ollama server holds among several (issue 20; docs/local_servers.md)."""

    model: str = Field(min_length=1)
    """Catalog model id (the server's quantization and options apply to it)."""
    weight: float = Field(gt=0)
    """Share of the requests that name this model (the weights of all models sum to 1)."""
    keep_alive_s: float | None = None
    """keep_alive the requests for this model set: idle seconds before unloading (negative:
    forever, 0: unload when idle; default: the server's keep_alive_s)."""


class SwapModelSpec(Spec):
    """One model behind llama-swap: its own llama-server process (``models.<id>.cmd``)."""

    model: str = Field(min_length=1)
    """Catalog model id (run with the server's llama.cpp options)."""
    weight: float = Field(gt=0)
    """Share of the requests that name this model (the weights of all models sum to 1)."""
    ttl_s: float = Field(ge=0, default=0.0)
    """``ttl``: idle seconds before llama-swap stops the process (0: never, the default)."""


class LlamaSwapSpec(Spec):
    """llama-swap in front of llama-server, one process per model (LOCAL_SERVERS.md §5)."""

    version: str = "v250"
    """llama-swap release: up to v217 the ProcessGroup swap (health polled every 5 s, one request at a
    time through a swap); from v218 the FIFO router (polled every 1 s; queued requests grouped by model)."""
    models: list[SwapModelSpec] = Field(min_length=1)
    """The models, all in the default group (swap: one at a time; exclusive)."""
    concurrency_limit: int = Field(ge=1, default=10)
    """``concurrencyLimit``: requests in flight per model before HTTP 429."""
    storage: str = "nvme-pcie4"
    """The disk the models load from (``sim/catalog/storage.yaml``)."""
    load_cap_gb_s: float = Field(gt=0, default=3.9)
    """Most GB/s a llama-server start reads (59 GB paged in in 15.1 s, llama.cpp #19191)."""
    startup_s: float = Field(ge=0, default=1.0)
    """Seconds to start llama-server besides reading the weights."""

    @model_validator(mode="after")
    def _mix(self) -> Self:
        total = sum(m.weight for m in self.models)
        if abs(total - 1.0) > 1e-9:
            fixed = ", ".join(f"{m.model}: {m.weight / total:.3g}" for m in self.models)
            raise ValueError(f"llama_swap.models: the weights sum to {total:g}, not 1; scale them ({fixed})")
        names = [m.model for m in self.models]
        if len(set(names)) < len(names):
            raise ValueError(f"llama_swap.models: {sorted({n for n in names if names.count(n) > 1})} listed twice; list each once")
        return self
