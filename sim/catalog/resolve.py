"""A scenario's model and hardware references resolved to catalog specs.

A model is a catalog id or ``{hf_config: path}`` (relative to the scenario's folder); hardware is
a catalog id or an inline spec. Errors become :class:`~sim.scenario.ScenarioError` naming the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sim.catalog.base import CatalogError
from sim.catalog.hardware import HardwareSpec
from sim.catalog.hf_config import model_from_hf_config
from sim.catalog.models import ModelSpec
from sim.catalog.tables import get_hardware, get_model
from sim.scenario import HfConfigModel, ScenarioError


def resolve_model(model: str | HfConfigModel, base_dir: str | Path = ".") -> ModelSpec:
    """The model a scenario names: a catalog id, or a Hugging Face config.json."""
    try:
        if isinstance(model, HfConfigModel):
            path = Path(model.hf_config)
            return model_from_hf_config(path if path.is_absolute() else Path(base_dir) / path, model.id)
        return get_model(model)
    except CatalogError as err:
        raise ScenarioError(f"model: {err}") from None


def resolve_hardware(hardware: str | dict[str, Any]) -> HardwareSpec:
    """The hardware a scenario names: a catalog id, or an inline spec."""
    try:
        if isinstance(hardware, dict):
            return HardwareSpec.model_validate(hardware)
        return get_hardware(hardware)
    except (CatalogError, ValueError) as err:
        raise ScenarioError(f"hardware: {err}") from None
