"""Writing validation results: a JSON file and a plot of the errors against their bounds."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sim.validation.cases import CaseResult

# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------


def write_outputs(results: Sequence[CaseResult], summary: dict[str, Any], out: Path, command: str = "") -> list[Path]:
    """validation.json and validation.png in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "cases": [r.row() for r in results],
        "summary": summary,
    }
    (out / "validation.json").write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")
    _plot(results, out / "validation.png")
    return [out / "validation.json", out / "validation.png"]


def _json_default(value: Any) -> Any:
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(value) else float(value)
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    return str(value)


def _plot(results: Sequence[CaseResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(r.id, e) for r in results for e in r.expectations]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, max(5.0, 0.22 * len(rows) + 1.5)),
                                   gridspec_kw={"width_ratios": [1, 1.4]})
    markers = {"throughput": "o", "p99_latency": "s", "latency": "^", "ratio": "D", "other": "x"}
    cmap = plt.get_cmap("tab10")
    case_ids = list(dict.fromkeys(r.id for r in results))
    for cat, marker in markers.items():
        for j, cid in enumerate(case_ids):
            pts = [(e.measured, e.predicted) for i, e in rows if i == cid and e.category == cat and e.predicted > 0
                   and e.measured > 0 and math.isfinite(e.predicted)]
            if pts:
                ax1.scatter(*zip(*pts, strict=True), marker=marker, color=cmap(j % 10), s=28,
                            label=f"{cid} ({cat})")
    vals = [v for _, e in rows for v in (e.measured, e.predicted) if v > 0 and math.isfinite(v)]
    if vals:
        lo, hi = min(vals) / 1.5, max(vals) * 1.5
        ax1.plot([lo, hi], [lo, hi], color="black", lw=0.8)
        ax1.set_xscale("log")
        ax1.set_yscale("log")
    ax1.set_xlabel("measured")
    ax1.set_ylabel("predicted")
    ax1.set_title("servesim validation: predicted vs measured")
    ax1.legend(fontsize=6, frameon=False)
    multi = {r.id for r in results if len({e.server for e in r.expectations}) > 1}
    labels = [f"{cid}{f' [{e.server}]' if cid in multi else ''}: {e.metric[:60]} {_sweep_text(e.sweep)}"
              for cid, e in rows]
    y = np.arange(len(rows))
    errors = [e.error * 100 if math.isfinite(e.error) else 0.0 for _, e in rows]
    limit = max([150.0, *(e.bound * 150 for _, e in rows)])
    colors = ["tab:green" if e.ok else "tab:orange" if e.status == "XFAIL" else "tab:red" for _, e in rows]
    ax2.barh(y, np.clip(errors, -limit, limit), color=colors)
    for k, err in enumerate(errors):
        if abs(err) > limit:
            ax2.text(np.sign(err) * limit * 0.98, k, f"{err:+.0f}% ", va="center", ha="right" if err > 0 else "left",
                     fontsize=6, color="white")
    ax2.set_xlim(-limit, limit)
    for k, (_, e) in enumerate(rows):
        ax2.plot([-e.bound * 100, e.bound * 100], [k, k], color="grey", lw=0, marker="|", ms=8)
    ax2.axvline(0, color="black", lw=0.8)
    ax2.set_yticks(y, labels, fontsize=6)
    ax2.invert_yaxis()
    ax2.set_xlabel("relative error % (ticks: bound; orange: known failure, red: failure)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _sweep_text(sweep: dict[str, Any] | None) -> str:
    return ",".join(f"{k.split('.')[-1]}={v}" for k, v in (sweep or {}).items())
