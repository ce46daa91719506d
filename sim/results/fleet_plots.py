"""Per-replica plot of fleet runs: one group of bars per router, one bar per replica, so an
imbalance (herding, a prefix hot spot) is visible at a glance."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["save_replica_plot"]

PANELS = (
    ("routed", "share of requests routed", True),
    ("utilisation", "utilisation (time with work inside)", False),
    ("mean_queue", "mean waiting requests", False),
    ("p99_ttft_ms", "p99 TTFT of its requests (ms)", False),
)


def save_replica_plot(points: Sequence[tuple[str, list[dict[str, Any]]]], out_dir: Path, title: str) -> str | None:
    """Write ``replicas.png`` from (point label, per-replica rows) pairs; None when no fleet ran."""
    points = [(label, rows) for label, rows in points if rows]
    if not points:
        return None
    fig = Figure(figsize=(11, 7.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2)
    width = 0.8 / max(len(rows) for _, rows in points)
    for ax, (key, label, share) in zip(axes.flat, PANELS, strict=True):
        for g, (_, rows) in enumerate(points):
            values = np.array([r.get(key, np.nan) for r in rows], dtype=float)
            if share:
                values = values / max(values.sum(), 1)
            xs = g - 0.4 + width * (np.arange(len(rows)) + 0.5)
            ax.bar(xs, values, width=width * 0.9, color=[f"C{i % 10}" for i in range(len(rows))])
        if share:
            for g, (_, rows) in enumerate(points):
                ax.hlines(1 / len(rows), g - 0.4, g + 0.4, colors="grey", linestyles="--", linewidth=1)
        ax.set_xticks(range(len(points)))
        ax.set_xticklabels([p for p, _ in points], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(label, fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
        if key == "p99_ttft_ms":
            ax.set_yscale("log")
    fig.suptitle(f"{title}: per replica (one bar per replica, colour = replica index)")
    fig.tight_layout()
    path = out_dir / "replicas.png"
    fig.savefig(path, dpi=100)
    return str(path)
