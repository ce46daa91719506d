"""Fleet entries of the ``servers:`` list: ``kind: fleet`` with ``members:`` (heterogeneous
fleets behind one router); a plain server entry with ``replicas:``/``router:`` is a fleet too."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from sim.scenario.base import Spec
from sim.scenario.router import RouterSpec
from sim.scenario.servers import ServerSpec


class FleetSpec(Spec):
    """Replicas of one or more servers behind one router, on one clock."""

    kind: Literal["fleet"] = "fleet"
    """Selects this variant (fleet)."""
    name: str | None = None
    """Label in tables and plots (default: fleet)."""
    members: list[ServerSpec] = Field(default_factory=list)
    """The servers behind the router; each member's ``replicas`` copies it."""
    router: RouterSpec = Field(default_factory=RouterSpec)
    """The router and its rule."""

    @model_validator(mode="after")
    def _has_members(self) -> FleetSpec:
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
