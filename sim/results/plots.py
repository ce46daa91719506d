"""Plots of results: each function takes result rows and returns the Axes it drew on.

matplotlib is imported here only, so the simulator core stays light. Figures are made with
:class:`matplotlib.figure.Figure` and drawn by the Agg canvas: no pyplot, no global state.
Every axis has its unit; latencies are drawn in seconds on a log axis with plain tick labels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator

from sim.scenario import Scenario
from sim.scenario.servers import LlamaCppSpec, OllamaSpec, VllmSpec

__all__ = ["PLOTS", "axis_label", "plot_metric", "run_title", "save_standard_plots"]


def _share(key: str) -> Callable[[dict[str, Any]], float]:
    return lambda r: 100.0 * r[key] / r["arrived"] if r["arrived"] else math.nan


def _seconds(key: str) -> Callable[[dict[str, Any]], float]:
    return lambda r: r[key] / 1e3 if r.get(key) is not None else math.nan


PLOTS: dict[str, tuple[str, Callable[[dict[str, Any]], float], bool]] = {
    # file stem: (y label with unit, value of a row, log axis)
    "output_throughput": ("output throughput (tokens/s)", lambda r: r["output_throughput"], False),
    "p99_ttft_ms": ("p99 time to first token (s)", _seconds("p99_ttft_ms"), True),
    "p99_e2el_ms": ("p99 end-to-end latency (s)", _seconds("p99_e2el_ms"), True),
    "timeouts": ("requests timed out (% of sent)", _share("timeouts"), False),
}

SWEEP_LABELS = {
    "users": "concurrent users (closed loop)",
    "rate_per_s": "request rate (requests/s)",
    "num_requests": "requests",
    "timeout_s": "client timeout (s)",
    "max_num_seqs": "max_num_seqs (sequences)",
    "max_num_batched_tokens": "max_num_batched_tokens (tokens)",
    "num_parallel": "num_parallel (slots)",
    "parallel": "parallel slots (-np)",
}


def axis_label(sweep_path: str) -> str:
    """The x label of a sweep: the quantity and its unit where it has one."""
    name = sweep_path.split(".")[-1]
    return SWEEP_LABELS.get(name, sweep_path)


def run_title(scenario: Scenario) -> str:
    """What a quoted plot must name: the scenario, model, hardware and each server's engine
    and version."""
    model = scenario.model if isinstance(scenario.model, str) else (scenario.model.id or "model from hf_config")
    hardware = scenario.hardware if isinstance(scenario.hardware, str) else "inline hardware"
    def describe(spec: Any) -> str:
        if isinstance(spec, OllamaSpec | LlamaCppSpec | VllmSpec):
            engine = f"{spec.engine} {spec.version}"
            return engine if spec.label == spec.engine else f"{spec.label} = {engine}"
        return f"{spec.label} ({spec.kind})"

    servers = ", ".join(describe(spec) for spec in scenario.servers)
    return f"{scenario.name}: {model} on {hardware}\n{servers}"


def _overloaded(row: dict[str, Any]) -> bool:
    """More than half the point's requests failed: its figures describe the survivors only."""
    return bool(row["arrived"]) and row["failed"] > row["arrived"] / 2


def _plain(value: float, _pos: int) -> str:
    return f"{value:g}"


def _series(row: dict[str, Any], x_path: str) -> str:
    """The line a row belongs to: its server, and the other swept fields' values in a grid."""
    rest = [f"{k.split('.')[-1]}={v}" for k, v in row["sweep"].items() if k != x_path]
    return row["server"] + (f" ({', '.join(rest)})" if rest else "")


def plot_metric(rows: Sequence[dict[str, Any]], metric: str, sweep_path: str | None, ax: Axes | None = None) -> Axes:
    """One line per server: the plot ``metric`` (a key of :data:`PLOTS`) against the sweep value
    (bars when there is no sweep). In a grid sweep ``sweep_path`` is the x axis and every
    combination of the other swept fields is a line of its own."""
    label, value, log = PLOTS[metric]
    if ax is None:
        fig = Figure(figsize=(7.0, 4.4))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
    servers = list(dict.fromkeys(r["server"] for r in rows))
    if sweep_path:
        flagged = False
        series = list(dict.fromkeys(_series(r, sweep_path) for r in rows))
        for name in series:
            pts = [(r["sweep"][sweep_path], value(r), _overloaded(r)) for r in rows if _series(r, sweep_path) == name]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
            bad = [p for p in pts if p[2]]
            if bad:
                ax.scatter([p[0] for p in bad], [p[1] for p in bad], s=140, facecolors="none", edgecolors="red",
                           linewidths=1.2, zorder=3, label=None if flagged else "over half the requests failed")
                flagged = True
        ax.set_xlabel(axis_label(sweep_path))
        ax.legend(fontsize=8)
    else:
        ax.bar(servers, [value(next(r for r in rows if r["server"] == s)) for s in servers])
        ax.set_xlabel("server")
    if log:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(_plain))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, p: ""))
    if metric == "timeouts":
        ax.set_ylim(-2, 102)
    ax.set_ylabel(label)
    ax.grid(True, alpha=0.3)
    return ax


def save_standard_plots(
    rows: Sequence[dict[str, Any]], sweep_path: str | None, out_dir: Path, title: str, timeout_s: float | None = None
) -> list[str]:
    """Write output throughput, p99 TTFT, p99 end-to-end latency and timeouts plots; return paths.

    ``title`` names the model, hardware and engine versions. Latencies are over completed
    requests, so a client timeout caps them: it is drawn as a dashed line on the latency plots.
    """
    paths = []
    for metric, (label, _, _) in PLOTS.items():
        ax = plot_metric(rows, metric, sweep_path)
        ax.set_title(f"{title}\n{label.split(' (')[0]}", fontsize=9)
        if metric in ("p99_e2el_ms", "p99_ttft_ms") and timeout_s:
            ax.axhline(timeout_s, color="grey", linestyle="--", linewidth=1)
            ax.annotate(f"client timeout ({timeout_s:g} s)", (0.01, timeout_s), xycoords=("axes fraction", "data"),
                        va="bottom", fontsize=8, color="grey")
        fig = ax.figure
        assert isinstance(fig, Figure)
        path = out_dir / f"{metric}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        paths.append(str(path))
    return paths
