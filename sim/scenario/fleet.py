"""Fleet entries of the ``servers:`` list: ``kind: fleet`` with ``members:`` (heterogeneous
fleets behind one router); a plain server entry with ``replicas:``/``router:`` is a fleet too."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from sim.scenario.base import Spec
from sim.scenario.router import RouterSpec
from sim.scenario.servers import ServerSpec


class KvTransferSpec(Spec):
    """How the KV of a prompt moves from the prefill pool to the decode pool (FLEETS.md §6)."""

    @model_validator(mode="after")
    def _one_bandwidth(self) -> KvTransferSpec:
        if self.link is not None and "bandwidth_gb_s" in self.model_fields_set:
            raise ValueError("give kv_transfer.link (a catalog interconnect) or bandwidth_gb_s, not both")
        return self

    connector: Literal["nixl_pull", "p2p_push"] = "nixl_pull"
    """nixl_pull: vLLM NixlConnector (the proxy sends to D after P answers; D pulls the whole KV);
    p2p_push: P2pNcclConnector (P pushes the KV to D as soon as it is computed)."""
    bandwidth_gb_s: float = Field(gt=0, default=50.0)
    """Effective link bandwidth, GB/s (default: one 400 Gb/s IB NDR port, nominal; Mooncake
    measured 87 GB/s over 4x200 Gb/s RoCE)."""
    link: str | None = None
    """An interconnect of the hardware catalog (sim/catalog/interconnects.yaml, e.g.
    ``nvlink4-nvswitch`` when P and D share one NVSwitch node): its per-direction bandwidth
    replaces ``bandwidth_gb_s`` (give one or the other)."""
    setup_s: float = Field(ge=0, default=0.001)
    """Fixed seconds per transfer (registration, notification)."""
    hop_s: float = Field(ge=0, default=0.0005)
    """One proxy hop (the pull flow waits for P's response, then sends to D: two hops)."""
    threshold_tokens: int = Field(ge=0, default=0)
    """llm-d selective P/D: prompts of at most this many tokens are prefilled on D itself."""


class FleetSpec(Spec):
    """Replicas of one or more servers behind one router, on one clock."""

    kind: Literal["fleet"] = "fleet"
    """Selects this variant (fleet)."""
    name: str | None = None
    """Label in tables and plots (default: fleet)."""
    members: list[ServerSpec] = Field(default_factory=list)
    """The servers behind the router; each member's ``replicas`` copies it."""
    router: RouterSpec = Field(default_factory=RouterSpec)
    """The router and its rule (with P/D: it picks the decode replica; prefill is round robin)."""
    prefill: ServerSpec | None = None
    """Disaggregated P/D: the prefill pool (a vLLM or paged_batching server with ``replicas``)."""
    decode: ServerSpec | None = None
    """Disaggregated P/D: the decode pool."""
    kv_transfer: KvTransferSpec = Field(default_factory=KvTransferSpec)
    """Disaggregated P/D: the connector and the link between the pools."""

    @model_validator(mode="after")
    def _has_members(self) -> FleetSpec:
        if (self.prefill is None) != (self.decode is None):
            raise ValueError("disaggregated P/D needs both prefill: and decode: pools (or neither)")
        if self.prefill is not None and self.decode is not None:
            if self.members:
                raise ValueError("give either members: or prefill:/decode: pools, not both")
            for name, pool in (("prefill", self.prefill), ("decode", self.decode)):
                if getattr(pool, "engine", None) != "vllm" and getattr(pool, "kind", None) != "paged_batching":
                    raise ValueError(f"{name}: only vLLM moves KV between instances (NixlConnector); "
                                     "use engine: vllm or kind: paged_batching for both pools")
                if pool.router is not None:
                    raise ValueError(f"{name}: a pool has no router of its own; give router: on the fleet")
            if self.prefill.kv_cache_dtype != self.decode.kv_cache_dtype:
                raise ValueError("prefill and decode pools must share kv_cache_dtype: D reads P's KV blocks as they are")
            return self
        if not self.members:
            raise ValueError("a fleet needs members: list at least one server, e.g. members: [{engine: vllm, replicas: 4}]")
        for i, member in enumerate(self.members):
            if member.router is not None:
                raise ValueError(f"members.{i}: a member has no router of its own; give router: on the fleet")
        return self

    @property
    def label(self) -> str:
        """Name shown in results."""
        return self.name or "fleet"


def _entry_tag(value: Any) -> str:
    kind = value.get("kind") if isinstance(value, dict) else getattr(value, "kind", None)
    return "fleet" if kind == "fleet" else "server"


ServerEntry = Annotated[
    Annotated[FleetSpec, Tag("fleet")] | Annotated[ServerSpec, Tag("server")],
    Discriminator(_entry_tag),
]
"""One entry of ``servers:``: a server (possibly replicated) or a fleet."""


def is_fleet(spec: Any) -> bool:
    """Whether a ``servers:`` entry runs as a fleet (several replicas, or a router)."""
    return isinstance(spec, FleetSpec) or spec.replicas > 1 or spec.router is not None
