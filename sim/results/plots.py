"""Plots of results: each function takes result rows and returns the Axes it drew on.

matplotlib is imported here only, so the simulator core stays light. Figures are made with
:class:`matplotlib.figure.Figure` and drawn by the Agg canvas: no pyplot, no global state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["plot_metric", "save_standard_plots"]

LABELS = {
    "output_throughput": "output throughput (tokens/s)",
    "p99_e2el_ms": "p99 end-to-end latency (ms)",
    "timeouts": "requests timed out",
    "p99_ttft_ms": "p99 time to first token (ms)",
}


def plot_metric(rows: Sequence[dict[str, Any]], metric: str, sweep_path: str | None, ax: Axes | None = None) -> Axes:
    """One line per server: ``metric`` against the sweep value (bars when there is no sweep)."""
    if ax is None:
        fig = Figure(figsize=(6.4, 4.2))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
    servers = list(dict.fromkeys(r["server"] for r in rows))
    if sweep_path:
        for server in servers:
            pts = [(r["sweep"][sweep_path], r[metric]) for r in rows if r["server"] == server]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=server)
        ax.set_xlabel(sweep_path.split(".")[-1])
        ax.legend()
    else:
        ax.bar(servers, [next(r[metric] for r in rows if r["server"] == s) for s in servers])
    ax.set_ylabel(LABELS.get(metric, metric))
    ax.grid(True, alpha=0.3)
    return ax


def save_standard_plots(
    rows: Sequence[dict[str, Any]], sweep_path: str | None, out_dir: Any, title: str, timeout_s: float | None = None
) -> list[str]:
    """Write output throughput, p99 end-to-end latency and timeouts plots; return their paths.

    Latencies are over completed requests, so a client timeout caps them: it is drawn as a
    dashed line on the latency plot.
    """
    paths = []
    for metric in ("output_throughput", "p99_e2el_ms", "timeouts"):
        ax = plot_metric(rows, metric, sweep_path)
        ax.set_title(f"{title}: {LABELS[metric]}")
        if metric == "p99_e2el_ms":
            ax.set_yscale("log")
            if timeout_s:
                ax.axhline(timeout_s * 1e3, color="grey", linestyle="--", linewidth=1)
                ax.annotate("client timeout", (0.01, timeout_s * 1e3), xycoords=("axes fraction", "data"),
                            va="bottom", fontsize=8, color="grey")
        fig = ax.figure
        path = out_dir / f"{metric}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        paths.append(str(path))
    return paths
