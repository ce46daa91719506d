"""The plot of a capacity plan: $/hour against a tail latency, one point per planned candidate,
the Pareto front joined, the cheapest plan ringed. Takes plain rows (``PlanResult.to_json()``'s
``candidates``), so it does not depend on the planner."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["plot_pareto"]


def plot_pareto(rows: Sequence[dict[str, Any]], metric: str, front: Sequence[str], cheapest: str | None,
                path: str | Path, title: str) -> Path:
    """Write the plot to ``path`` (PNG) and return it."""
    fig = Figure(figsize=(7.5, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    planned = [r for r in rows if r.get("status") == "planned"]
    for r in planned:
        x, y = r["usd_per_hour"], r.get(metric, float("nan"))
        ax.scatter([x], [y], s=40, zorder=3, color="tab:blue" if r["candidate"] in front else "tab:gray")
        ax.annotate(f"{r['candidate']} x{r['replicas']}", (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    pts = sorted((r["usd_per_hour"], r[metric]) for r in planned if r["candidate"] in front)
    if pts:
        ax.step([p[0] for p in pts], [p[1] for p in pts], where="post", color="tab:blue", label="Pareto front")
    best = next((r for r in planned if r["candidate"] == cheapest), None)
    if best is not None:
        ax.scatter([best["usd_per_hour"]], [best[metric]], s=160, facecolors="none", edgecolors="tab:red",
                   zorder=4, label=f"cheapest: {cheapest}")
    costs = [r["usd_per_hour"] for r in planned if r["usd_per_hour"] > 0]
    if costs and max(costs) > 10 * min(costs):  # costs spanning decades: a log axis keeps them apart
        ax.set_xscale("log")
    ax.set_xlabel("fleet cost ($/hour)")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if planned:
        ax.legend(fontsize=8)
    out = Path(path)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    return out
