"""Report of a calibration run: per-point residuals as text, measured vs fitted as a PNG."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from calibration.fit import PARAMS, FitReport, FitRun

__all__ = ["params_table", "plot_fit", "residual_lines", "summary_lines", "write_report"]

_SHORT = {
    "bandwidth_efficiency": "bw_eff",
    "compute_efficiency": "gemm_eff",
    "attention_efficiency": "attn_eff",
    "step_overhead_s": "step_oh_ms",
    "seq_overhead_s": "seq_oh_ms",
}


def _value(name: str, value: float) -> str:
    return f"{value * 1e3:.3g}" if name.endswith("_s") else f"{value:.3g}"


def _mark(status: str) -> str:
    """`*` fitted, `b` fitted at a bound, `-` fixed at the prior."""
    return "b" if "bound" in status else "*" if status.startswith("fitted") else "-"


def summary_lines(reports: Sequence[FitReport]) -> list[str]:
    """One line per group: points, MAPE, max error, parameters (``*`` fitted, ``-`` prior)."""
    head = f"{'profile':62s} {'pts':>4s} {'MAPE':>6s} {'max':>6s}  " + "  ".join(f"{_SHORT[p]:>11s}" for p in PARAMS)
    lines = [head]
    for r in reports:
        cells = "  ".join(f"{_value(p, r.params[p]) + _mark(r.status[p]):>11s}" for p in PARAMS)
        cached = " (cached)" if r.cached else ""
        lines.append(f"{r.profile_id + cached:62s} {r.num_points:>4d} {r.mape:>6.1%} {r.max_abs_error:>6.1%}  {cells}")
    lines.append("(* fitted, b fitted at a bound, - fixed at the prior: not identifiable from the group's points)")
    return lines


def residual_lines(report: FitReport) -> list[str]:
    """Per point: shape, measured, fitted, relative error, where it comes from."""
    lines = [f"{report.profile_id}: {report.num_points} points, MAPE {report.mape:.1%}, max {report.max_abs_error:.1%}"]
    for name in PARAMS:
        lines.append(f"    {name:22s} {report.params[name]:<10.4g} {report.status[name]}")
    for p in report.points:
        row = str(p["row"])
        lines.append(
            f"    {p['shape']:48.48s} measured {p['measured_s'] * 1e3:9.3f} ms  fitted {p['fitted_s'] * 1e3:9.3f} ms  "
            f"{p['rel_error']:+7.1%}  w={p['weight']:g}  {row[-60:]}"
        )
    return lines


def params_table(reports: Sequence[FitReport]) -> list[str]:
    """Markdown table of the fitted parameters (for docs)."""
    lines = [
        ("| profile | points | MAPE | max | bandwidth eff. | GEMM eff. | attention eff. | step overhead ms "
         "| seq overhead ms | decode GEMM x by batch |"),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in reports:
        cells = " | ".join(
            (f"**{_value(p, r.params[p])}**" if r.status[p].startswith("fitted") else _value(p, r.params[p]))
            + (" (bound)" if "bound" in r.status[p] else "")
            for p in PARAMS
        )
        table = r.params.get("decode_batch_scale") or {}
        batch = " ".join(f"{b}:**{v:g}**" for b, v in sorted((int(b), v) for b, v in table.items())) or "-"
        lines.append(f"| `{r.profile_id}` | {r.num_points} | {r.mape:.1%} | {r.max_abs_error:.1%} | {cells} | {batch} |")
    return lines


def plot_fit(reports: Sequence[FitReport], path: Path) -> None:
    """Measured vs fitted seconds per point, log-log, one colour per group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 8))
    cmap = plt.get_cmap("tab20")
    lo, hi = float("inf"), 0.0
    for i, r in enumerate(reports):
        xs = [p["measured_s"] for p in r.points]
        ys = [p["fitted_s"] for p in r.points]
        if not xs:
            continue
        lo, hi = min(lo, *xs, *ys), max(hi, *xs, *ys)
        marker = "os^vD<>"[i // 20 % 7]
        ax.scatter(xs, ys, s=14, color=cmap(i % 20), marker=marker, label=f"{r.profile_id.removeprefix('fitted-')} "
                   f"({r.mape:.0%})")
    if hi > 0:
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
        for f in (0.8, 1.25):
            ax.plot([lo, hi], [lo * f, hi * f], color="grey", lw=0.5, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("measured seconds (one pass; whole run for latency totals)")
    ax.set_ylabel("fitted roofline seconds")
    ax.set_title("servesim calibration: measured vs fitted (dashed: ±20-25 %)")
    ax.legend(fontsize=6, loc="upper left", ncol=1, markerscale=0.8, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(run: FitRun, out: Path, echo: Callable[[str], None] = print) -> list[Path]:
    """Print the residuals of every group and write ``fit.png`` and ``residuals.txt`` to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    text = []
    for r in run.reports:
        text += residual_lines(r) + [""]
    for line in text:
        echo(line)
    (out / "residuals.txt").write_text("\n".join(summary_lines(run.reports) + [""] + text) + "\n")
    plot_fit(run.reports, out / "fit.png")
    return [out / "residuals.txt", out / "fit.png"]
