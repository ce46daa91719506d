"""Validation cases: scenarios whose metrics were measured on real servers, and how close we get.

A case is a YAML file (``calibration/validation/*.yaml``) naming the VALIDATION data it comes
from, its credibility, the assumptions made, a full scenario, and the measured values to
compare against::

    id: pyserver-t1
    source: calibration/data/this_machine/llama_cpp_python_server/summary.csv
    credibility: A
    notes: one request at a time; ...
    scenario: {name: ..., model: ..., hardware: ..., workload: ..., servers: [...], sweep: ...}
    expect:
      - {server: pyserver, sweep: {workload.arrival.users: 4}, metric: output_throughput,
         measured: 54.74, bound: 0.3}
      - metric: {ratio: {numerator: {sweep: {workload.arrival.users: 2}, metric: output_throughput_per_user},
                         denominator: {sweep: {workload.arrival.users: 1}, metric: output_throughput_per_user}}}
        measured: 0.80
        bound: 0.5

The relative error is ``(predicted - measured) / measured``; an expectation fails when its
absolute value exceeds ``bound`` (unless it is declared a ``known_failure``: reported as
XFAIL, and as XPASS, which fails the run, once it passes). Metrics are those of :func:`sim.metrics.summarize` plus the
derived ones in :data:`DERIVED_METRICS` (per-user throughput of a closed loop).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sim.metrics import STATS
from sim.metrics.steady import STEADY_KEYS
from sim.scenario import (
    ClosedLoopArrival,
    Scenario,
    ScenarioError,
    format_validation_error,
    parse_scenario,
)

__all__ = [
    "CASES_DIR",
    "DERIVED_METRICS",
    "CaseResult",
    "ExpectationResult",
    "ValidationCase",
    "load_case",
    "run_case",
    "run_validation",
    "summarize_results",
    "write_outputs",
]

CASES_DIR = Path(__file__).resolve().parent.parent / "calibration" / "validation"
DERIVED_METRICS = ("output_throughput_per_user",)
"""Metrics computed here: a closed loop's output throughput divided by its users."""
SUMMARY_METRICS = (
    "completed", "request_throughput", "output_throughput", "total_token_throughput", "request_goodput",
    *(f"{s}_{m}" for m in ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms") for s in STATS),
    *STEADY_KEYS,
)
TARGETS = {"throughput": 0.10, "p99_latency": 0.20}
"""The project's accuracy targets: median |error| on throughput and on p99 latency."""
METRIC_GROUPS = {
    "throughput": ("output_throughput", "request_throughput", "total_token_throughput", "output_throughput_per_user"),
    "TTFT p50": ("median_ttft_ms",),
    "TTFT p95/p99": ("p95_ttft_ms", "p99_ttft_ms"),
    "TPOT": ("median_tpot_ms", "mean_tpot_ms"),
    "e2e p99": ("p99_e2el_ms",),
}
"""The per-engine report's metric groups (issue 15); ratios of metrics form the group "ratio"."""
ENGINE_TARGETS = {"throughput": 0.10, "TTFT p50": 0.15, "TTFT p95/p99": 0.15, "e2e p99": 0.15}
"""Per-engine targets: median |error| <= 10 % on throughput, <= 15 % on TTFT and on e2e p99."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class MetricRef(_Spec):
    """One metric of one server at one sweep point."""

    server: str | None = None
    """Server label (default: the scenario's only server, or the expectation's server)."""
    sweep: dict[str, Any] | None = None
    """Sweep point, e.g. {workload.arrival.users: 8} (default: the expectation's, or none)."""
    metric: str
    """A metric name (sim.metrics, or p95_ttft_ms / p95_e2el_ms / p95_tpot_ms / output_throughput_per_user)."""


class Ratio(_Spec):
    """numerator / denominator."""

    numerator: MetricRef
    denominator: MetricRef


class RatioMetric(_Spec):
    """A ratio of two metrics, e.g. per-user throughput at 8 users over that at 1 user."""

    ratio: Ratio


class Expectation(_Spec):
    """A measured value and the relative error allowed for its prediction."""

    server: str | None = None
    """Server label (default: the scenario's only server)."""
    sweep: dict[str, Any] | None = None
    """Sweep point (omit when the scenario has no sweep)."""
    metric: str | RatioMetric
    """A metric name, or {ratio: {numerator: {...}, denominator: {...}}}."""
    measured: float
    """The measured value (same unit as the metric: tokens/s, ms, or a plain ratio)."""
    bound: float = Field(gt=0)
    """Largest |predicted - measured| / measured accepted."""
    note: str = ""
    """Where the measured number is in the source, any conversion made."""
    known_failure: str | None = None
    """Why this prediction is known to miss its bound (an assumption the source contradicts,
    a missing mechanism). It is reported as XFAIL and does not fail the run; if it comes within
    its bound the run fails (XPASS), so that a stale marker is removed. Its error still counts
    in the medians."""

    @field_validator("measured")
    @classmethod
    def _nonzero(cls, v: float) -> float:
        if v == 0 or not math.isfinite(v):
            raise ValueError("measured must be a finite non-zero number (the error is relative to it)")
        return v


class ValidationCase(_Spec):
    """One validation case file."""

    id: str
    """Unique name of the case."""
    source: str
    """URL or repo path of the VALIDATION data the measured values come from."""
    credibility: Literal["A", "B", "C", "D"]
    """A primary/reproducible, B blog with a stated setup, C incomplete setup, D shape only."""
    notes: str = ""
    """Assumptions: engine version preset, lengths, hardware variant, why the bounds are what they are."""
    scenario: dict[str, Any]
    """A full scenario (sim/scenario/); relative paths are resolved against the case file."""
    expect: list[Expectation] = Field(min_length=1)
    """Measured values to compare with."""


class CaseError(ScenarioError):
    """A validation case file is invalid (names the file, the field and the fix)."""


@dataclass
class ExpectationResult:
    """One compared number."""

    metric: str
    sweep: dict[str, Any] | None
    server: str
    predicted: float
    measured: float
    error: float
    bound: float
    ok: bool
    """Within the bound."""
    category: str
    note: str = ""
    known_failure: str | None = None
    engine: str = ""
    """The server's engine (or architecture), for the per-engine report."""

    @property
    def status(self) -> str:
        """ok, FAIL, XFAIL (known failure, missed as expected) or XPASS (known failure that passed)."""
        if self.known_failure:
            return "XPASS" if self.ok else "XFAIL"
        return "ok" if self.ok else "FAIL"

    @property
    def fails_run(self) -> bool:
        return self.status in ("FAIL", "XPASS")

    def row(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("metric", "sweep", "server", "engine", "predicted", "measured", "error",
                                              "bound", "ok", "status", "category", "note")}
        if self.known_failure:
            out["known_failure"] = self.known_failure
        return out


@dataclass
class CaseResult:
    """A case and its compared numbers."""

    id: str
    file: str
    source: str
    credibility: str
    notes: str
    expectations: list[ExpectationResult] = field(default_factory=list)
    seconds: float = 0.0

    def row(self) -> dict[str, Any]:
        return {"id": self.id, "file": self.file, "source": self.source, "credibility": self.credibility,
                "notes": self.notes, "seconds": round(self.seconds, 2),
                "expectations": [e.row() for e in self.expectations]}


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _display(path: Path) -> str:
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def load_case(path: str | Path) -> tuple[ValidationCase, Scenario]:
    """Read and check a case file; raises CaseError naming the file and the field."""
    path = Path(path)
    where = _display(path)
    if not path.is_file():
        raise CaseError(f"{where}: no such validation case file; check the path")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise CaseError(f"{where}: not valid YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise CaseError(f"{where}: a validation case must be a mapping with id, source, credibility, scenario, expect")
    try:
        case = ValidationCase.model_validate(data)
    except ValidationError as err:
        raise CaseError(format_validation_error(where, err).replace("is not a valid scenario", "is not a valid validation case")) from None
    scenario = parse_scenario(case.scenario, f"{where}: scenario", str(path.parent))
    labels = [s.label for s in scenario.servers]
    points = _sweep_points(scenario)
    for i, e in enumerate(case.expect):
        refs = [("", MetricRef(server=e.server, sweep=e.sweep, metric=e.metric))] if isinstance(e.metric, str) else [
            ("metric.ratio.numerator.", e.metric.ratio.numerator), ("metric.ratio.denominator.", e.metric.ratio.denominator)]
        for prefix, ref in refs:
            server = ref.server or e.server
            sweep = ref.sweep if ref.sweep is not None else e.sweep
            if server is None and len(labels) > 1:
                raise CaseError(f"{where}: expect.{i}.{prefix}server: required, the scenario has servers {labels}")
            if server is not None and server not in labels:
                raise CaseError(f"{where}: expect.{i}.{prefix}server: {server!r} is not a server of the scenario; "
                                f"servers: {labels}")
            if ref.metric not in (*SUMMARY_METRICS, *DERIVED_METRICS):
                raise CaseError(f"{where}: expect.{i}.{prefix}metric: unknown metric {ref.metric!r}; use one of "
                                f"{', '.join((*SUMMARY_METRICS, *DERIVED_METRICS))}")
            if _norm_sweep(sweep) not in points:
                raise CaseError(f"{where}: expect.{i}.{prefix}sweep: {sweep} is not a point of the scenario's sweep; "
                                f"points: {_points_text(scenario)}")
            if ref.metric == "output_throughput_per_user" and not isinstance(scenario.workload.arrival, ClosedLoopArrival):
                raise CaseError(f"{where}: expect.{i}.{prefix}metric: output_throughput_per_user needs a closed_loop arrival")
    return case, scenario


def _norm_sweep(sweep: dict[str, Any] | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in (sweep or {}).items()))


def _points_text(scenario: Scenario) -> str:
    if scenario.sweep is None:
        return "none (the scenario has no sweep: omit sweep)"
    return ", ".join(str(point) for point in scenario.sweep.points())


def _sweep_points(scenario: Scenario) -> list[tuple[tuple[str, str], ...]]:
    if scenario.sweep is None:
        return [()]
    return [_norm_sweep(point) for point in scenario.sweep.points()]


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------


def _derived(result: Any, scenario: Scenario) -> dict[str, float]:
    """A closed loop's output throughput per user (the rest comes from sim.metrics)."""
    if isinstance(scenario.workload.arrival, ClosedLoopArrival):
        return {"output_throughput_per_user": result.metrics["output_throughput"] / scenario.workload.arrival.users}
    return {}


def _category(metric: str | RatioMetric) -> str:
    if not isinstance(metric, str):
        return "ratio"
    if "throughput" in metric or "goodput" in metric:
        return "throughput"
    if metric.startswith("p99_"):
        return "p99_latency"
    if metric.endswith("_ms"):
        return "latency"
    return "other"


def _metric_text(metric: str | RatioMetric) -> str:
    if isinstance(metric, str):
        return metric
    num, den = metric.ratio.numerator, metric.ratio.denominator

    same = num.metric == den.metric

    def side(ref: MetricRef) -> str:
        bits = [] if same else [ref.metric]
        if ref.server:
            bits.append(f"@{ref.server}")
        if ref.sweep:
            bits.append("[" + ",".join(f"{k.split('.')[-1]}={v}" for k, v in ref.sweep.items()) + "]")
        return "".join(bits)

    return f"{num.metric} {side(num)} / {side(den)}" if same else f"{side(num)} / {side(den)}"


def run_case(path: str | Path) -> CaseResult:
    """Simulate a case's scenario and compare every expectation."""
    import time

    from sim.simulation import run, sweep_scenarios

    started = time.perf_counter()
    case, scenario = load_case(path)
    results = run(scenario)
    swept = {_norm_sweep(point): sc for point, sc in sweep_scenarios(scenario)}
    table: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, float]] = {}
    for r in results:
        key = _norm_sweep(r.sweep)
        table[(r.server, key)] = {**r.metrics, **_derived(r, swept[key])}
    only = scenario.servers[0].label
    engines = {r.server: r.engine for r in results}

    def value(ref: MetricRef, e: Expectation) -> float:
        server = ref.server or e.server or only
        sweep = ref.sweep if ref.sweep is not None else e.sweep
        return float(table[(server, _norm_sweep(sweep))][ref.metric])

    out = CaseResult(case.id, _display(Path(path)), case.source, case.credibility, case.notes)
    for e in case.expect:
        if isinstance(e.metric, str):
            predicted = value(MetricRef(metric=e.metric), e)
        else:
            den = value(e.metric.ratio.denominator, e)
            predicted = value(e.metric.ratio.numerator, e) / den if den else math.nan
        error = (predicted - e.measured) / e.measured
        ok = math.isfinite(error) and abs(error) <= e.bound
        out.expectations.append(ExpectationResult(
            _metric_text(e.metric), e.sweep, e.server or only, predicted, e.measured, error, e.bound, ok,
            _category(e.metric), e.note, e.known_failure, engines.get(e.server or only, ""),
        ))
    out.seconds = time.perf_counter() - started
    return out


def _median_abs(results: Sequence[CaseResult], category: str | None) -> float | None:
    errs = [abs(e.error) for r in results for e in r.expectations if category in (None, e.category)]
    errs = [x for x in errs if math.isfinite(x)]
    return round(statistics.median(errs), 4) if errs else None


def summarize_results(results: Sequence[CaseResult]) -> dict[str, Any]:
    """Median |error| per category (throughput, p99_latency, latency, ratio, all), counts, failures."""
    categories = ("throughput", "p99_latency", "latency", "ratio")
    summary: dict[str, Any] = {f"median_abs_error_{c}": _median_abs(results, c) for c in categories}
    summary["median_abs_error_all"] = _median_abs(results, None)
    summary["num_expectations"] = {c: sum(e.category == c for r in results for e in r.expectations) for c in categories}
    summary["num_outside_bound"] = sum(not e.ok for r in results for e in r.expectations)
    summary["num_known_failures"] = sum(e.status == "XFAIL" for r in results for e in r.expectations)
    summary["num_failed"] = sum(e.fails_run for r in results for e in r.expectations)
    summary["failed_cases"] = [r.id for r in results if any(e.fails_run for e in r.expectations)]
    summary["by_engine"] = by_engine(results)
    summary["targets"] = {
        f"median_abs_error_{k}": {
            "target": v,
            "met": None if summary[f"median_abs_error_{k}"] is None else summary[f"median_abs_error_{k}"] <= v,
        }
        for k, v in TARGETS.items()
    }
    return summary


def metric_group(metric: str) -> str:
    """The per-engine report's group of a metric ("ratio" for ratios, "other" if none)."""
    if " / " in metric:
        return "ratio"
    return next((g for g, names in METRIC_GROUPS.items() if metric in names), "other")


def by_engine(results: Sequence[CaseResult]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per engine and metric group: median |error|, count, and the target where there is one."""
    errs: dict[str, dict[str, list[float]]] = {}
    for r in results:
        for e in r.expectations:
            if math.isfinite(e.error):
                errs.setdefault(e.engine, {}).setdefault(metric_group(e.metric), []).append(abs(e.error))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for engine, groups in sorted(errs.items()):
        out[engine] = {}
        for group in (*METRIC_GROUPS, "ratio", "other"):
            if group in groups:
                med = round(statistics.median(groups[group]), 4)
                target = ENGINE_TARGETS.get(group)
                out[engine][group] = {"median_abs_error": med, "n": len(groups[group]), "target": target,
                                      "met": None if target is None else med <= target}
    return out


def case_files(paths: Sequence[str | Path] = ()) -> list[Path]:
    """The case files named (folders expand to their *.yaml), or all of calibration/validation/."""
    targets = [Path(p) for p in paths] or [CASES_DIR]
    files: list[Path] = []
    for t in targets:
        files += sorted(t.glob("*.yaml")) if t.is_dir() else [t]
    return files


def run_validation(
    paths: Sequence[str | Path] = (), progress: Callable[[str], None] | None = None
) -> tuple[list[CaseResult], dict[str, Any]]:
    """Load every case first (fail fast on a bad file), then run them."""
    files = case_files(paths)
    for f in files:
        load_case(f)
    results = []
    for f in files:
        if progress:
            progress(str(f))
        results.append(run_case(f))
    return results, summarize_results(results)


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
    labels = [f"{cid}: {e.metric[:60]} {_sweep_text(e.sweep)}" for cid, e in rows]
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
