"""Power drawn by an accelerator against its load (watts per GPU), for energy and cost.

:func:`power_model` gives, for a catalog hardware id, a :class:`PowerModel`: the logistic in
log2 of the running batch fitted by ``calibration/power.py`` on measured vLLM serving power
(``prices/power_fits.yaml``, with source, data dates and residuals), or, for hardware without
a fitted curve, the H100 curve **transferred**: its shape kept, scaled by the ratio of board
powers (board power from ``prices/power.csv``, which names its source). ``basis`` says which.
Hardware with neither has no model: the plan must give its power (``PowerOverride``).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import yaml

from sim.catalog.base import CatalogError

__all__ = ["FITS_PATH", "PowerModel", "board_power", "logistic_power", "power_model"]

FITS_PATH = Path(str(files("sim.catalog") / "prices" / "power_fits.yaml"))
"""Fitted constants (written by ``python -m calibration.power``)."""

TRANSFER_FROM = "h100-sxm"
"""The fitted curve whose shape hardware without its own fit borrows."""

BOARD_NAMES = {
    "h100-sxm": "H100 SXM 80GB", "h100-pcie": "H100 PCIe", "h200": "H200", "a100-80gb-sxm": "A100 80GB SXM",
    "a100-40gb-sxm": "A100 40GB SXM", "a100-80gb-pcie": "A100 80GB PCIe", "a100-40gb-pcie": "A100 40GB PCIe",
    "l40s": "L40S", "l4": "L4", "a10g": "A10G", "b200": "B200", "mi300x": "MI300X", "rtx-5090": "RTX 5090",
    "rtx-4090": "RTX 4090", "rtx-3090": "RTX 3090", "rtx-4080": "RTX 4080", "rtx-6000-ada": "RTX 6000 Ada",
    "apple-m2-ultra": "Apple M2 Ultra",
}
"""Catalog hardware id -> accelerator name in ``prices/power.csv`` and ``prices/prices.csv``."""


def logistic_power(batch: float, idle_w: float, max_w: float, k: float, x0: float) -> float:
    """``idle + (max - idle) / (1 + exp(-k (log2 b - x0)))``; ``idle_w`` at batch 0 (no work)."""
    if batch <= 0:
        return idle_w
    z = -k * (math.log2(batch) - x0)
    return idle_w + (max_w - idle_w) / (1.0 + math.exp(min(z, 700.0)))


@dataclass(frozen=True)
class PowerModel:
    """Watts per GPU against the running batch per GPU, with where the numbers come from."""

    hardware: str
    idle_w: float
    max_w: float
    k: float
    x0: float
    basis: str
    """``fitted`` (its own measured curve), ``transferred`` (another's shape, scaled) or ``given``."""
    source: str

    def watts(self, batch: float) -> float:
        """Power per GPU at a mean running batch ``batch`` (0: idle)."""
        return logistic_power(batch, self.idle_w, self.max_w, self.k, self.x0)

    def scaled(self, hardware: str, factor: float, source: str) -> PowerModel:
        """This shape for another board, every wattage multiplied by ``factor``."""
        return PowerModel(hardware, self.idle_w * factor, self.max_w * factor, self.k, self.x0, "transferred", source)


@lru_cache(maxsize=1)
def _fits() -> dict[str, object]:
    return yaml.safe_load(FITS_PATH.read_text())  # type: ignore[no-any-return]


@lru_cache(maxsize=1)
def _boards() -> dict[str, tuple[float, str]]:
    """Accelerator name -> (board power W, source URL): the first row giving a TDP (or, for
    whole machines, the measured maximum at the wall)."""
    out: dict[str, tuple[float, str]] = {}
    text = (files("sim.catalog") / "prices" / "power.csv").read_text(encoding="utf-8")
    for row in csv.DictReader(io.StringIO(text)):
        watts = row["tdp_w"] or (row["max_measured_w"] if "whole machine" in row["scope"] else "")
        if watts and row["accelerator"] not in out:
            out[row["accelerator"]] = (float(watts), row["source_url"])
    return out


def board_power(hardware: str) -> tuple[float, str] | None:
    """(board power in W, its source) of a catalog hardware id, or None if not recorded."""
    name = BOARD_NAMES.get(hardware)
    return _boards().get(name) if name else None


def power_model(hardware: str, gpus: int = 1) -> PowerModel:
    """The power model of a catalog hardware id in an instance of ``gpus`` GPUs (a TP group):
    its own fit for that size, else its single-GPU fit, else the transferred H100 single-GPU
    shape (raises CatalogError if the board power is not recorded either)."""
    doc = _fits()
    fits: dict[str, dict[str, dict[str, float]]] = doc["fits"]  # type: ignore[assignment]
    source = f"{doc['source']}; fitted {doc['fitted_on']} ({doc['fitted_by']})"
    if hardware in fits:
        key = f"gpus{gpus}" if f"gpus{gpus}" in fits[hardware] else "gpus1"
        f = fits[hardware][key]
        return PowerModel(hardware, f["idle_w"], f["max_w"], f["k"], f["x0"], "fitted", f"{source}; {key}")
    board = board_power(hardware)
    if board is None:
        raise CatalogError(
            f"no power figure for hardware {hardware!r} (sim/catalog/prices/power.csv); "
            "give one in the plan, e.g. power: {idle_w: 30, max_w: 300}"
        )
    ref = fits[TRANSFER_FROM]["gpus1"]
    return PowerModel(hardware, ref["idle_w"], ref["max_w"], ref["k"], ref["x0"], "fitted", source).scaled(
        hardware, board[0] / ref["board_w"],
        f"{TRANSFER_FROM} fit scaled by board power {board[0]:.0f} W / {ref['board_w']:.0f} W ({board[1]})",
    )
