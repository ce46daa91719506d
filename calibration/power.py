"""Fit the power-against-load model of each accelerator on measured LLM-serving power.

The model is the four-parameter logistic in the base-2 logarithm of the running batch that
ML.ENERGY's data toolkit (``mlenergy_data/modeling/logistic.py``) and vLLM semantic-router's
fleet simulator use::

    P(b) = idle_w + (max_w - idle_w) / (1 + exp(-k (log2 b - x0)))      (watts per GPU)

fitted by ``scipy.optimize.curve_fit`` per accelerator and GPU count on the rows of
``calibration/data/prices_power/power_vs_load.csv`` that give a per-GPU power and a measured
running batch (``avg_batch_size``, divided over the instance's GPUs): the ML.ENERGY v3 vLLM
sweeps (H100 SXM, B200; every model of a GPU count pooled, so the residuals include the spread
between models: one fit per instance size, since a GPU of a TP group draws differently from a
lone one). Accelerators with fewer than :data:`MIN_POINTS` such rows (the A100, RTX 3090
and RTX 6000 Ada single runs name no batch) are not fitted: :mod:`sim.catalog.power` transfers
the H100 shape to them, scaled by board power, and says so.

The data have no idle points (the smallest batch is 8), so ``idle_w`` is an extrapolation:
it is bounded to [0.1, 0.8] of board power and reported as such.

``python -m calibration.power`` rewrites ``sim/catalog/prices/power_fits.yaml`` with the
constants, the source, the hardware, the date of the data and the residuals.
"""

from __future__ import annotations

import csv
import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy.optimize import curve_fit

from sim.catalog.power import FITS_PATH, logistic_power

__all__ = ["DATA", "PowerFit", "fit_accelerator", "fit_all", "load_points", "main"]

DATA = Path(__file__).parent / "data" / "prices_power" / "power_vs_load.csv"
"""Measured power against load (a copy; see ``calibration/data/README.md``)."""

ACCELERATORS = {"H100 SXM 80GB": ("h100-sxm", 700.0), "B200": ("b200", 1000.0)}
"""Accelerator name in the data -> (catalog id, board power in W, from the same source's
About page: ML.ENERGY leaderboard, 700 W H100 80GB HBM3, 1,000 W B200)."""

MIN_POINTS = 20
"""Fewest rows with a measured batch for a fit (four parameters and a spread over models)."""


@dataclass(frozen=True)
class PowerFit:
    """The fitted constants of one accelerator and how well they fit."""

    hardware: str
    board_w: float
    idle_w: float
    max_w: float
    k: float
    x0: float
    points: int
    rms_w: float
    max_abs_w: float
    rms_rel: float
    batch_range: tuple[float, float]
    dates: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        """The YAML entry."""
        return {
            "idle_w": round(self.idle_w, 2), "max_w": round(self.max_w, 2), "k": round(self.k, 4),
            "x0": round(self.x0, 4), "board_w": self.board_w, "points": self.points,
            "residual_rms_w": round(self.rms_w, 2), "residual_max_abs_w": round(self.max_abs_w, 2),
            "residual_rms_rel": round(self.rms_rel, 4),
            "batch_range": [round(self.batch_range[0], 2), round(self.batch_range[1], 2)],
            "data_dates": list(self.dates),
        }


def load_points(path: Path = DATA) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray, tuple[str, ...]]]:
    """Per (catalog id, GPUs of the instance): (running batch per GPU, watts per GPU, data
    dates) of the usable rows."""
    out: dict[tuple[str, int], tuple[list[float], list[float], set[str]]] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["accelerator"] not in ACCELERATORS or not row["avg_batch_size"] or not row["power_w_per_gpu"]:
                continue
            gpus = int(row["num_gpus"] or 1)
            batch = float(row["avg_batch_size"]) / gpus
            if batch <= 0:
                continue
            hw = ACCELERATORS[row["accelerator"]][0]
            xs, ys, dates = out.setdefault((hw, gpus), ([], [], set()))
            xs.append(batch)
            ys.append(float(row["power_w_per_gpu"]))
            dates.add(row["date"])
    return {key: (np.array(xs), np.array(ys), tuple(sorted(d))) for key, (xs, ys, d) in out.items()}


def fit_accelerator(hardware: str, board_w: float, batch: np.ndarray, watts: np.ndarray,
                    dates: tuple[str, ...] = ()) -> PowerFit:
    """Least-squares logistic fit (watts) with physical bounds."""
    if batch.size < MIN_POINTS:
        raise ValueError(f"{hardware}: {batch.size} points, fewer than {MIN_POINTS}")

    def model(b: np.ndarray, idle: float, top: float, k: float, x0: float) -> np.ndarray:
        return np.array([logistic_power(float(x), idle, top, k, x0) for x in b])

    lower = [0.1 * board_w, 0.2 * board_w, 0.05, -4.0]
    upper = [0.8 * board_w, 1.05 * board_w, 5.0, 12.0]
    start = [0.4 * board_w, 0.85 * board_w, 1.0, 4.0]
    params, _ = curve_fit(model, batch, watts, p0=start, bounds=(lower, upper), maxfev=20000)
    resid = model(batch, *params) - watts
    idle, top, k, x0 = (float(p) for p in params)
    return PowerFit(hardware, board_w, idle, top, k, x0, int(batch.size),
                    float(np.sqrt(np.mean(resid**2))), float(np.max(np.abs(resid))),
                    float(np.sqrt(np.mean((resid / watts) ** 2))),
                    (float(batch.min()), float(batch.max())), dates)


def fit_all(path: Path = DATA) -> dict[tuple[str, int], PowerFit]:
    """Every (accelerator, GPU count) with enough points."""
    boards = {hw: w for hw, w in ACCELERATORS.values()}
    return {key: fit_accelerator(key[0], boards[key[0]], *pts) for key, pts in sorted(load_points(path).items())
            if pts[0].size >= MIN_POINTS}


def main(out: Path = FITS_PATH) -> None:
    """Refit and rewrite ``power_fits.yaml``."""
    fits = fit_all()
    doc: dict[str, Any] = {
        "model": "P(b) = idle_w + (max_w - idle_w) / (1 + exp(-k (log2 b - x0))), W per GPU, b = running batch per GPU",
        "source": "ML.ENERGY Leaderboard v3 (ml-energy/leaderboard public/data/tasks/*.json, vLLM, Zeus GPU energy), "
                  "as copied in calibration/data/prices_power/power_vs_load.csv",
        "licence": "Apache-2.0 (ml-energy/data)",
        "fitted_by": "python -m calibration.power (calibration/power.py)",
        "fitted_on": _dt.date.today().isoformat(),
        "notes": "every model pooled per (accelerator, GPUs per instance): residuals include the spread between models; "
                 "no idle points in the data (smallest batch 8), idle_w is extrapolated within [0.1, 0.8] x board_w",
        "fits": {},
    }
    for (hw, gpus), f in fits.items():
        doc["fits"].setdefault(hw, {})[f"gpus{gpus}"] = f.as_dict()
    out.write_text(yaml.safe_dump(doc, sort_keys=False, width=120))
    for (hw, gpus), f in fits.items():
        print(f"{hw} x{gpus}: idle {f.idle_w:.0f} W, max {f.max_w:.0f} W, k {f.k:.2f}, x0 {f.x0:.2f}; "
              f"{f.points} points, residual RMS {f.rms_w:.1f} W ({f.rms_rel:.1%}), max {f.max_abs_w:.0f} W")
    print(f"wrote {out}")


if __name__ == "__main__":  # pragma: no cover
    main()
