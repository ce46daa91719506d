"""Batched decoding of llama.cpp priced from batched measurements: one GEMM multiplier per batch size.

llama.cpp decodes a handful of sequences with kernels the roofline does not describe: one
sequence runs matrix-vector kernels, a few run small-tile paths that re-read or under-use the
weights, and the time of a step does not follow max(memory, compute) as the number of sequences
grows. On the developers' CPU the step time doubles from one sequence to two and is nearly flat
from 2 to 4 and from 8 to 16; on a V100 (2023 build) two sequences take 1.9x one. The five
roofline parameters fitted on all rows at once then miss by -56..+40 % by number of sequences
(``docs/calibration.md``).

The fit is therefore in two stages (:func:`calibration.fit._fit`): the five parameters on every
row except the pure decode rows with two or more sequences; then, for each batch size ``B`` in
those rows, the multiplier ``s_B`` of the GEMM times of a pure decode pass of ``B`` sequences
(:attr:`sim.costs.RooflineStepCost.decode_scale`) that minimises the weighted squared relative
error of that batch size's rows. Between measured batch sizes the multiplier is interpolated in
log2 B (1 at one sequence); beyond the largest it stays at the last one. Passes that read a
prompt keep the large-batch kernels (multiplier 1).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from scipy.optimize import minimize_scalar

from sim.costs import RooflineStepCost
from sim.profiles import CostParams

__all__ = ["BATCHED_ENGINES", "SCALE_BOUNDS", "batched_decode_rows", "fit_decode_scale"]

BATCHED_ENGINES = ("llama.cpp", "ollama")
"""Engines whose multi-sequence decode runs small-batch kernels (vLLM's CUDA-graph GEMMs follow
the roofline: its fitted groups miss by under 5 % at every batch size up to 64)."""
SCALE_BOUNDS = (1 / 16, 16.0)


class _Point(Protocol):
    shapes: tuple[Any, ...]
    measured_s: float
    weight: float


def batched_decode_rows(engine: str, points: Sequence[_Point]) -> list[int]:
    """Indices of the pure decode rows with two or more sequences (llama.cpp / Ollama groups)."""
    if engine not in BATCHED_ENGINES:
        return []
    return [
        i for i, p in enumerate(points)
        if len(p.shapes) == 1 and p.shapes[0].num_prefill_tokens == 0 and p.shapes[0].num_decode_seqs >= 2
    ]


def fit_decode_scale(
    cost_of: Callable[[CostParams], RooflineStepCost],
    predict: Callable[[RooflineStepCost, Sequence[_Point]], np.ndarray],
    params: CostParams,
    points: Sequence[_Point],
) -> tuple[dict[int, float], dict[str, Any]]:
    """The multiplier per batch size, and per batch size the rows' mean relative error before
    (multiplier 1) and after."""
    by_batch: dict[int, list[_Point]] = defaultdict(list)
    for p in points:
        by_batch[p.shapes[0].num_decode_seqs].append(p)
    knots: dict[int, float] = {}
    detail: dict[str, Any] = {}
    lo, hi = (math.log2(b) for b in SCALE_BOUNDS)
    for batch, rows in sorted(by_batch.items()):
        measured = np.array([p.measured_s for p in rows])
        weights = np.sqrt(np.array([p.weight for p in rows], dtype=float))

        def errors(log_scale: float, batch: int = batch, rows: list[_Point] = rows,
                   measured: np.ndarray = measured) -> np.ndarray:
            cost = cost_of(params.model_copy(update={"decode_batch_scale": {batch: 2.0**log_scale}}))
            return predict(cost, rows) / measured - 1.0

        def loss(log_scale: float, weights: np.ndarray = weights, errors: Any = errors) -> float:
            e = errors(log_scale)
            return float(np.sum(weights * e * e))

        best = minimize_scalar(loss, bounds=(lo, hi), method="bounded", options={"xatol": 1e-4})
        scale = float(f"{2.0 ** float(best.x):.4g}")
        knots[batch] = scale
        before, after = errors(0.0), errors(math.log2(scale))
        detail[str(batch)] = {
            "scale": scale, "rows": len(rows),
            "mean_rel_error_before": round(float(np.mean(before)), 4),
            "mean_rel_error_after": round(float(np.mean(after)), 4),
        }
    return knots, detail


def residuals_by_batch(profiles_dir: str) -> dict[str, dict[int, tuple[float, int]]]:
    """Per fitted profile with decode rows at 2+ batch sizes: batch size -> (mean relative error
    of its pure decode rows, rows), read from the residuals the profiles record."""
    import re

    import yaml

    out: dict[str, dict[int, tuple[float, int]]] = {}
    for path in sorted(Path(profiles_dir).glob("fitted-*.yaml")):
        data = yaml.safe_load(path.read_text())
        for prof in data.get("profiles", [data]) if isinstance(data, dict) else data:
            rows: dict[int, list[float]] = defaultdict(list)
            for r in prof.get("provenance", {}).get("residuals", []):
                if m := re.fullmatch(r"decode (\d+) seq ctx \d+", r["shape"]):
                    rows[int(m.group(1))].append(float(r["rel_error"]))
            if len(rows) > 1:
                out[prof["id"]] = {b: (float(np.mean(v)), len(v)) for b, v in sorted(rows.items())}
    return out


if __name__ == "__main__":  # python -m calibration.fit_batching [PROFILES_DIR]: residuals by batch size
    import sys

    folder = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parent / "profiles")
    for pid, by_batch in residuals_by_batch(folder).items():
        print(f"{pid.removeprefix('fitted-'):52s} " + " ".join(f"PL{b}:{e:+.0%}({n})" for b, (e, n) in by_batch.items()))
