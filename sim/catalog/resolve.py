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
from sim.catalog.interconnects import link_of, parse_node
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
    """The hardware a scenario names: a catalog id, an inline spec, or a node of several GPUs
    (``8x h100-sxm``, or ``{gpu: rtx-5090, count: 2, interconnect: pcie5-nop2p}`` where ``gpu``
    is a catalog id or an inline spec; ``host``: the machine's CPU, a catalog cpu id)."""
    try:
        if isinstance(hardware, dict):
            if "gpu" in hardware:
                return _node(hardware)
            spec = HardwareSpec.model_validate(hardware)
        elif (node := parse_node(hardware)) is not None:
            spec = HardwareSpec.model_validate({**get_hardware(node[1]).model_dump(), "count": node[0]})
        else:
            spec = get_hardware(hardware)
        if spec.count > 1 or spec.interconnect:
            link_of(spec)  # an unknown link is refused here, with the valid ids
        return spec
    except (CatalogError, ValueError) as err:
        raise ScenarioError(f"hardware: {err}") from None


_NODE_KEYS = {"gpu", "count", "interconnect", "host"}


def _node(data: dict[str, Any]) -> HardwareSpec:
    """``{gpu, count, interconnect}``: a node of ``count`` GPUs joined by ``interconnect``."""
    extra = set(data) - _NODE_KEYS
    if extra:
        raise CatalogError(f"a node takes only {sorted(_NODE_KEYS)}; remove {sorted(extra)}")
    gpu = data["gpu"]
    base = HardwareSpec.model_validate(gpu) if isinstance(gpu, dict) else get_hardware(str(gpu))
    count = data.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise CatalogError(f"count must be a whole number of GPUs >= 1, got {count!r}")
    host = data.get("host", base.host)
    if host is not None and get_hardware(str(host)).kind != "cpu":
        raise CatalogError(f"host {host!r} is not a cpu; name a catalog cpu (e.g. cpu-generic-16c)")
    spec = HardwareSpec.model_validate(
        {**base.model_dump(), "count": count, "interconnect": data.get("interconnect", base.interconnect), "host": host}
    )
    if count > 1 or spec.interconnect:
        link_of(spec)
    return spec
