"""A fleet entry resolved: every replica's policy and cost model, and the router spec."""

from __future__ import annotations

from dataclasses import dataclass, field

from sim.catalog import CatalogError, HardwareSpec, ModelSpec
from sim.engines import EngineError, ResolvedServer, ServerSpecT, resolve_server
from sim.scenario import FleetSpec, RouterSpec

__all__ = ["ResolvedFleet", "resolve_fleet"]


@dataclass
class ResolvedFleet(ResolvedServer):
    """A fleet: its replicas (one resolved server each, members repeated ``replicas`` times)."""

    members: list[ResolvedServer] = field(default_factory=list)
    router: RouterSpec = field(default_factory=RouterSpec)


def resolve_fleet(spec: FleetSpec | ServerSpecT, model: ModelSpec, hardware: HardwareSpec) -> ResolvedFleet:
    """Resolve a ``kind: fleet`` entry, or a server entry with ``replicas``/``router``."""
    if isinstance(spec, FleetSpec):
        members, router, prefix = spec.members, spec.router, "members."
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
    label = spec.label
    engines = sorted({r.engine for r in replicas})
    notes: dict[str, object] = {"replicas": len(replicas), "router": router.kind,
                                "members": [r.label for r in replicas]}
    return ResolvedFleet(label, "fleet:" + "+".join(engines), None, None, None, replicas[0].weight_format,
                         replicas[0].profile, notes, replicas, router)
