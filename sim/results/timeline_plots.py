"""Plots of a :class:`~sim.results.timeline.Timeline`: what a teacher shows to explain a scheduler.

* :func:`plot_gantt`: the passes of every server side by side on the same arrivals, with the
  requests' lives (queued, prefill, decode, preempted) underneath;
* :func:`plot_batch_and_step_time`: sequences per pass and seconds per pass over time;
* :func:`plot_kv_occupancy`: KV occupancy over time, preemptions marked;
* :func:`plot_step_time_vs_batch`: each decode pass's time against its batch size, with the
  roofline's memory-bound and compute-bound lines of the server's cost model.

Every figure is titled with the model, hardware, engine versions and the sweep point, and its
axes carry units. Figures are :class:`matplotlib.figure.Figure` drawn by the Agg canvas (no
pyplot), as in :mod:`sim.results.plots`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from sim.costs import RooflineStepCost
from sim.results.timeline import (
    DECODE,
    DECODE_PASS,
    PREFILL,
    QUEUED,
    SERVICE,
    SPAN_KINDS,
    ServerTimeline,
    Timeline,
)

__all__ = [
    "plot_batch_and_step_time",
    "plot_gantt",
    "plot_kv_occupancy",
    "plot_step_time_vs_batch",
    "roofline_lines",
    "save_timeline_plots",
]

PHASE_COLORS = ("tab:orange", "tab:blue", "tab:purple")  # prefill, decode, mixed passes
SPAN_COLORS = {QUEUED: "0.85", PREFILL: "tab:orange", DECODE: "tab:blue", SERVICE: "tab:green"}
SERVER_COLORS = ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:brown", "tab:olive")


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _servers_text(timeline: Timeline, servers: list[ServerTimeline] | None = None) -> str:
    return "; ".join(f"{s.server} = {s.label}" for s in (servers or timeline.servers))


def plot_gantt(timeline: Timeline, window_s: tuple[float, float] | None = None, max_requests: int = 20) -> Figure:
    """One panel per server (same time axis): its passes on the top lane, coloured by phase,
    and below them the lives of up to ``max_requests`` requests that overlap the window."""
    servers = timeline.servers
    if window_s is None:  # long enough for 60 passes of the server that steps fastest
        ends = [float(s.passes["end_s"][min(59, s.num_passes - 1)]) for s in servers if s.num_passes]
        window_s = (0.0, min(ends) if ends else max(float(s.spans["end_s"].max(initial=1.0)) for s in servers))
    t0, t1 = window_s
    fig = _figure(12, 2.0 + 2.6 * len(servers))
    axes = fig.subplots(len(servers), 1, sharex=True, squeeze=False)[:, 0]
    for ax, s in zip(axes, servers, strict=True):
        _gantt_panel(ax, s, t0, t1, max_requests)
    axes[-1].set_xlabel("simulated time (s)")
    axes[-1].set_xlim(t0, t1)
    handles = [Patch(color=c, label=f"{n} pass") for n, c in zip(("prefill", "decode", "mixed"), PHASE_COLORS, strict=True)]
    handles += [Patch(color=SPAN_COLORS[k], label=f"request {SPAN_KINDS[k]}") for k in (QUEUED, PREFILL, DECODE)]
    fig.legend(handles=handles, loc="lower center", fontsize=7, ncol=6)
    fig.suptitle(f"Forward passes and requests: {timeline.title}\n{_servers_text(timeline)}", fontsize=9)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def _gantt_panel(ax: Axes, s: ServerTimeline, t0: float, t1: float, max_requests: int) -> None:
    p = s.passes
    inside = (p["end_s"] > t0) & (p["start_s"] < t1)
    start, dur, phase = p["start_s"][inside], (p["end_s"] - p["start_s"])[inside], p["phase"][inside]
    edge = 0.5 if inside.sum() <= 300 else 0.0  # white pass boundaries, while they can be seen
    for code, color in enumerate(PHASE_COLORS):
        m = phase == code
        ax.broken_barh(list(zip(start[m], dur[m], strict=True)), (0.1, 0.8), facecolors=color,
                       edgecolors="white", linewidth=edge)
    sp = s.spans
    shown = sp["end_s"] > t0
    shown &= sp["start_s"] < t1
    requests = sorted(set(sp["request"][shown].tolist()))[:max_requests]
    lane = {r: i + 1 for i, r in enumerate(requests)}
    for kind, color in SPAN_COLORS.items():
        m = (sp["kind"] == kind) & shown & np.isin(sp["request"], requests)
        for r in set(sp["request"][m].tolist()):
            mr = m & (sp["request"] == r)
            ax.broken_barh(list(zip(sp["start_s"][mr], (sp["end_s"] - sp["start_s"])[mr], strict=True)),
                           (lane[r] + 0.2, 0.6), facecolors=color)
    ev = s.events
    pre = (ev["kind"] == 0) & np.isin(ev["request"], requests)
    if pre.any():
        ax.plot(ev["time_s"][pre], [lane[r] + 0.5 for r in ev["request"][pre].tolist()], "x", color="red",
                markersize=7, label="preempted")
        ax.legend(loc="lower right", fontsize=7)
    ax.set_yticks([0.5] + [lane[r] + 0.5 for r in requests])
    ax.set_yticklabels(["passes"] + [f"req {r}" for r in requests], fontsize=6)
    ax.set_ylim(len(requests) + 1, 0)
    busy = float((np.minimum(p["end_s"][inside], t1) - np.maximum(start, t0)).sum())
    ax.set_title(f"{s.server} ({s.label}): {int(inside.sum())} passes, busy {busy:.3f} s of {t1 - t0:.3f} s",
                 fontsize=8, loc="left")


def plot_batch_and_step_time(timeline: Timeline, window_s: tuple[float, float] | None = None) -> Figure:
    """Sequences in each pass, and its duration (ms), against time: one line per server."""
    fig = _figure(11, 6.5)
    ax_b, ax_t = fig.subplots(2, 1, sharex=True)
    for color, s in zip(SERVER_COLORS, timeline.servers, strict=False):
        if not s.num_passes:
            continue
        t = s.passes["start_s"]
        ax_b.step(t, s.batch_size, where="post", color=color, linewidth=0.9, label=f"{s.server} ({s.label})")
        ax_t.plot(t, s.step_s * 1e3, ".", color=color, markersize=2, label=s.server)
    ax_b.set_ylabel("batch size (sequences per pass)")
    ax_t.set_yscale("log")  # decode passes of a few ms beside prompt passes of hundreds
    ax_t.set_ylabel("step time (ms per pass, log scale)")
    ax_t.set_xlabel("simulated time (s)")
    ax_b.legend(fontsize=7, loc="upper right")
    for ax in (ax_b, ax_t):
        ax.grid(True, alpha=0.3)
    if window_s is not None:
        ax_t.set_xlim(*window_s)
    fig.suptitle(f"Batch size and step time: {timeline.title}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_kv_occupancy(timeline: Timeline, window_s: tuple[float, float] | None = None) -> Figure:
    """KV cache held after each pass (% of capacity) against time, preemptions marked."""
    fig = _figure(11, 4.2)
    ax = fig.add_subplot()
    marked = False
    for color, s in zip(SERVER_COLORS, timeline.servers, strict=False):
        if not s.kv_capacity or not s.num_passes:
            continue
        occupancy = 100 * s.kv_occupancy
        ax.step(s.passes["end_s"], occupancy, where="post", color=color, linewidth=0.9,
                label=f"{s.server} ({s.label}): {s.kv_capacity:,} KV {s.kv_unit}")
        pre = s.passes["preemptions"] > 0
        if pre.any():
            ax.plot(s.passes["start_s"][pre], occupancy[pre], "v", color="black", markersize=6,
                    label=None if marked else "preemption (pass that preempted)")
            marked = True
    ax.set_ylabel("KV cache occupancy (% of capacity)")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylim(0, 105)
    if window_s is not None:
        ax.set_xlim(*window_s)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="center right", framealpha=0.9)
    n = sum(int(s.passes["preemptions"].sum()) for s in timeline.servers)
    ax.set_title(f"KV cache occupancy: {timeline.title}; {n} preemption(s)", fontsize=9)
    fig.tight_layout()
    return fig


def roofline_lines(cost: RooflineStepCost, batch: np.ndarray, context_per_seq: float) -> tuple[np.ndarray, np.ndarray]:
    """Seconds of a decode pass of ``batch`` sequences if it were bound only by memory (weights
    and KV read at the fitted bandwidth) or only by compute (GEMM and attention FLOPs at the
    fitted throughputs), both with the per-pass and per-sequence overheads."""
    b = np.asarray(batch, dtype=np.float64)
    passes = np.maximum(1, np.ceil(b / cost.max_pass_tokens))
    overhead = cost.step_overhead_s * passes + cost.seq_overhead_s * b
    context = b * context_per_seq
    # the small-batch GEMM kernels' factor on decode passes (llama.cpp), as the cost model applies it
    scale = np.array([cost._scale(int(n)) for n in b]) if cost.decode_scale else 1.0
    memory = (scale * cost.weight_bytes_per_pass * passes / cost.bandwidth_bytes_per_s
              + cost.kv_bytes_per_token * (context + b) / cost.bandwidth_bytes_per_s)
    compute = (scale * 2.0 * (cost.layer_matmul_params + cost.lm_head_params) * b / cost.gemm_flops_per_s
               + cost.attention_flops_per_pair * context / cost.attention_flops_per_s)
    return overhead + memory, overhead + compute


def plot_step_time_vs_batch(timeline: Timeline, max_batch: int | None = None) -> Figure:
    """Each decode-only pass: its step time (ms) against its batch size, with the server's
    memory-bound (dashed) and compute-bound (dotted) roofline lines at the run's mean context
    (drawn once for servers with the same cost model), out to past the batch where they cross."""
    fig = _figure(8, 5.2)
    ax = fig.add_subplot()
    decoding = [(color, s, s.passes["phase"] == DECODE_PASS)
                for color, s in zip(SERVER_COLORS, timeline.servers, strict=False)]
    decoding = [(color, s, m) for color, s, m in decoding if m.any()]
    lines: list[tuple[str, list[str], RooflineStepCost, float]] = []  # color, servers, cost, mean context
    for color, s, m in decoding:
        if not isinstance(s.cost, RooflineStepCost):
            continue
        ctx = float(s.passes["context_tokens"][m].sum() / s.passes["decode_seqs"][m].sum())
        same = next((line for line in lines if line[2] == s.cost), None)
        if same is None:
            lines.append((color, [s.server], s.cost, ctx))
        else:
            same[1].append(s.server)
    top = max((int(s.passes["decode_seqs"][m].max()) for _, s, m in decoding), default=1)
    knees = [_knee(cost, ctx) for _, _, cost, ctx in lines]
    limit = max_batch or max([2 * top] + [min(int(1.5 * k), 1024) for k in knees if math.isfinite(k)])
    batch = np.arange(1, limit + 1)
    for color, names, cost, ctx in lines:
        memory, compute = roofline_lines(cost, batch, ctx)
        who = " = ".join(names)
        ax.plot(batch, memory * 1e3, "--", color=color, linewidth=1, label=f"{who}: memory-bound")
        ax.plot(batch, compute * 1e3, ":", color=color, linewidth=1.3, label=f"{who}: compute-bound")
    for color, s, m in decoding:
        ax.plot(s.passes["decode_seqs"][m], s.step_s[m] * 1e3, "o", color=color, markersize=4, alpha=0.6,
                label=f"{s.server} ({s.label}) decode passes")
    ax.set_xlim(0, limit)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("batch size (sequences decoded in the pass)")
    ax.set_ylabel("step time (ms per pass)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"Step time against batch size: {timeline.title}\n(roofline lines at the run's mean context "
                 "per sequence; a pass takes about the higher of the two)", fontsize=9)
    fig.tight_layout()
    return fig


def _knee(cost: RooflineStepCost, context_per_seq: float) -> float:
    """Batch size at which the compute-bound line crosses the memory-bound one."""
    one_mem, one_comp = roofline_lines(cost, np.array([1.0, 2.0]), context_per_seq)
    slope = (one_comp[1] - one_comp[0]) - (one_mem[1] - one_mem[0])
    return math.inf if slope <= 0 else 1 + float(one_mem[0] - one_comp[0]) / slope


def save_timeline_plots(timeline: Timeline, out_dir: str | Path, prefix: str = "",
                        window_s: tuple[float, float] | None = None) -> list[Path]:
    """Write the four plots as PNGs into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = {
        "gantt": plot_gantt(timeline, window_s),
        "batch_step_time": plot_batch_and_step_time(timeline),
        "kv_occupancy": plot_kv_occupancy(timeline),
        "step_time_vs_batch": plot_step_time_vs_batch(timeline),
    }
    paths = []
    for name, fig in figures.items():
        path = out / f"{prefix}{name}.png"
        fig.savefig(path, dpi=110)
        paths.append(path)
    return paths
