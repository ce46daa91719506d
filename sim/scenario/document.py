"""The scenario document: model, hardware, workload, servers, sweep and SLO."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from sim.scenario.base import Spec
from sim.scenario.fleet import ServerEntry
from sim.scenario.workload import WorkloadSpec


class HfConfigModel(Spec):
    """A model given by its Hugging Face config.json."""

    hf_config: str
    """Path to config.json, relative to the scenario file."""
    id: str | None = None
    """Model id for cost-profile matching (default: the last part of the config's
    ``_name_or_path``; a config without one needs this)."""


def _check_field_path(path: str | None) -> None:
    parts = (path or "").split(".")
    if path is not None and (not path or any(not part for part in parts) or parts[0] in ("sweep", "base_dir")):
        raise ValueError(
            f"{path!r} is not a field to sweep; name one dotted field of the scenario, "
            "e.g. workload.arrival.users or servers.vllm.max_num_seqs"
        )


def _check_scalars(values: list[Any]) -> None:
    for value in values:
        if isinstance(value, dict | list | tuple):
            raise ValueError(
                f"{value!r} is not a number, string or boolean: a sweep varies one scalar field at a time "
                "(e.g. path: workload.arrival.rate_per_s, values: [1, 2, 4]); to compare "
                "arrival processes or server setups, list them as servers or write one scenario each"
            )


class SweepSpec(Spec):
    """Run every server once per value of one dotted field (``path`` and ``values``), or per
    point of a grid over several fields (``grid``: every combination, or the lists zipped)."""

    path: str | None = None
    """Dotted field, e.g. workload.arrival.users."""
    values: list[Any] | None = Field(min_length=1, default=None)
    """Values to try, in order: numbers, strings, booleans or null (the field's default)."""
    grid: dict[str, list[Any]] | None = None
    """Several fields at once: dotted field -> values, e.g. {workload.arrival.users: [1, 8],
    servers.vllm.max_num_seqs: [64, 256], hardware: [l40s, h100-sxm]}."""
    mode: Literal["product", "zip"] = "product"
    """Grid: every combination (product, the last field varying fastest) or the i-th value of
    every list together (zip: the lists must have equal lengths)."""

    @field_validator("path")
    @classmethod
    def _field_path(cls, path: str | None) -> str | None:
        _check_field_path(path)
        return path

    @field_validator("values")
    @classmethod
    def _scalars(cls, values: list[Any] | None) -> list[Any] | None:
        _check_scalars(values or [])
        return values

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        single = self.path is not None or self.values is not None
        if single == (self.grid is not None):
            raise ValueError("give either path and values, or grid (e.g. grid: {workload.arrival.users: [1, 8]})")
        if single and (self.path is None or self.values is None):
            raise ValueError("give both path and values (e.g. path: workload.arrival.users, values: [1, 8])")
        for path, values in (self.grid or {}).items():
            _check_field_path(path)
            _check_scalars(values)
        if self.grid is not None:
            if not self.grid or any(not v for v in self.grid.values()):
                raise ValueError("every grid field needs at least one value")
            if self.mode == "zip" and len({len(v) for v in self.grid.values()}) > 1:
                sizes = ", ".join(f"{k}: {len(v)}" for k, v in self.grid.items())
                raise ValueError(f"zip needs lists of equal length (got {sizes}); use mode: product or fix the lists")
        return self

    def points(self) -> list[dict[str, Any]]:
        """Every sweep point as {dotted field: value}, in run order."""
        if self.grid is None:
            assert self.path is not None and self.values is not None
            return [{self.path: v} for v in self.values]
        keys = list(self.grid)
        combos = (itertools.product(*self.grid.values()) if self.mode == "product"
                  else zip(*self.grid.values(), strict=True))
        return [dict(zip(keys, combo, strict=True)) for combo in combos]


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
    seed: int = Field(ge=0, default=0)
    """Root of every random stream of the run (a non-negative integer)."""
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

