"""A fleet entry resolved: every replica's policy and cost model, and the router spec."""

from __future__ import annotations

from dataclasses import dataclass, field

from sim.catalog import CatalogError, HardwareSpec, ModelSpec, kv_dtype_bytes
from sim.catalog.interconnects import get_link
from sim.engines import EngineError, ResolvedServer, ServerSpecT, resolve_server
from sim.scenario import FleetSpec, KvTransferSpec, RouterSpec

__all__ = ["ResolvedFleet", "resolve_fleet"]


@dataclass
class ResolvedFleet(ResolvedServer):
    """A fleet: its replicas (one resolved server each, members repeated ``replicas`` times)."""

    members: list[ResolvedServer] = field(default_factory=list)
    router: RouterSpec = field(default_factory=RouterSpec)
    prefill: list[ResolvedServer] = field(default_factory=list)
    """Disaggregated P/D: the prefill replicas (``members`` are then the decode replicas)."""
    kv_transfer: KvTransferSpec | None = None
    kv_bytes_per_token: float = 0.0
    """Bytes of KV one prompt token moves from P to D (the model's KV layout, the pools' dtype)."""


def resolve_fleet(spec: FleetSpec | ServerSpecT, model: ModelSpec, hardware: HardwareSpec) -> ResolvedFleet:
    """Resolve a ``kind: fleet`` entry, or a server entry with ``replicas``/``router``."""
    pd = isinstance(spec, FleetSpec) and spec.prefill is not None and spec.decode is not None
    if isinstance(spec, FleetSpec) and spec.prefill is not None and spec.decode is not None:
        members, router, prefix = [spec.decode], spec.router, "decode."
    elif isinstance(spec, FleetSpec):
        members, router, prefix = list(spec.members), spec.router, "members."
    else:
        members, router, prefix = [spec], spec.router or RouterSpec(), ""
    replicas: list[ResolvedServer] = []
    for i, member in enumerate(members):
        one = member.model_copy(update={"replicas": 1, "router": None})
        try:
            resolved = resolve_server(one, model, hardware)
        except (EngineError, CatalogError) as err:
            raise EngineError(f"{prefix}{i}: {err}" if prefix else str(err)) from None
        replicas.extend([resolved] * member.replicas)
    prefill: list[ResolvedServer] = []
    if isinstance(spec, FleetSpec) and spec.prefill is not None:
        one = spec.prefill.model_copy(update={"replicas": 1, "router": None})
        try:
            prefill = [resolve_server(one, model, hardware)] * spec.prefill.replicas
        except (EngineError, CatalogError) as err:
            raise EngineError(f"prefill: {err}") from None
    label = spec.label
    engines = sorted({r.engine for r in replicas})
    # what priced the replicas' passes, as a lone server's run says it (profile, front end, speed noise)
    notes: dict[str, object] = {k: v for k, v in replicas[0].notes.items()
                                if k.startswith("cost_profile") or k in ("frontend", "speed_noise")}
    notes.update({"replicas": len(replicas), "router": router.kind, "members": [r.label for r in replicas]})
    if not pd:
        return ResolvedFleet(label, "fleet:" + "+".join(engines), None, None, weight_format=replicas[0].weight_format,
                             profile=replicas[0].profile, notes=notes, members=replicas, router=router)
    assert isinstance(spec, FleetSpec) and spec.decode is not None
    transfer = spec.kv_transfer
    if transfer.link is not None:  # the catalog's link sets the bandwidth
        try:
            link = get_link(transfer.link)
        except CatalogError as err:
            raise EngineError(f"kv_transfer.link: {err}") from None
        transfer = transfer.model_copy(update={"bandwidth_gb_s": link.per_direction_gb_s})
    dtype = "f16" if spec.decode.kv_cache_dtype == "auto" else spec.decode.kv_cache_dtype
    kv = model.kv_bytes_per_token(kv_dtype_bytes(dtype))
    notes.update({"prefill_replicas": len(prefill), "decode_replicas": len(replicas),
                  "kv_bytes_per_token": kv, "connector": transfer.connector,
                  "kv_link": f"{transfer.link or 'fleet spec'}: {transfer.bandwidth_gb_s:g} GB/s"})
    return ResolvedFleet(label, "fleet:pd", None, None, weight_format=replicas[0].weight_format,
                         profile=replicas[0].profile, notes=notes, members=replicas, router=router, prefill=prefill,
                         kv_transfer=transfer, kv_bytes_per_token=kv)
