"""The scenario document: model, hardware, workload, servers, sweep and SLO."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import (
    Field,
)

from sim.scenario.base import Spec
from sim.scenario.fleet import ServerEntry
from sim.scenario.workload import WorkloadSpec


class HfConfigModel(Spec):
    """A model given by its Hugging Face config.json."""

    hf_config: str
    """Path to config.json, relative to the scenario file."""
    id: str | None = None
    """Model id for cost-profile matching (default: from the config's name or folder)."""


class SweepSpec(Spec):
    """Run every server once per value of one dotted field."""

    path: str
    """Dotted field, e.g. workload.arrival.users."""
    values: list[Any] = Field(min_length=1)
    """Values to try, in order."""


class SloSpec(Spec):
    """Service-level objective for goodput (a request is good if it meets every bound given)."""

    ttft_ms: float | None = Field(gt=0, default=None)
    """Bound on time to first token."""
    tpot_ms: float | None = Field(gt=0, default=None)
    """Bound on time per output token."""
    e2el_ms: float | None = Field(gt=0, default=None)
    """Bound on end-to-end latency."""


class Scenario(Spec):
    """One what-if: a model on some hardware, a workload, the servers to compare."""

    name: str
    """Label used in tables, plots and result files."""
    seed: int = 0
    """Root of every random stream of the run."""
    model: str | HfConfigModel
    """Catalog model id (e.g. llama-3.1-8b) or {hf_config: path/to/config.json}."""
    hardware: str | dict[str, Any]
    """Catalog hardware id (e.g. rtx-4090) or an inline hardware spec."""
    workload: WorkloadSpec
    """Arrival process, lengths and client timeout."""
    servers: list[ServerEntry] = Field(min_length=1)
    """Servers (or fleets of them) to compare on the same workload (same seed, same requests)."""
    sweep: SweepSpec | None = None
    """Optional sweep over one field."""
    slo: SloSpec | None = None
    """Optional SLO for goodput."""
    base_dir: str = Field(default=".", exclude=True)
    """Folder relative paths are resolved against (set by load_scenario)."""

    def resolve(self, path: str) -> Path:
        """Resolve a path given in the scenario."""
        p = Path(path)
        return p if p.is_absolute() else Path(self.base_dir) / p

