"""Running validation cases and summarising their errors by metric group and by engine."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sim.scenario import (
    ClosedLoopArrival,
    Scenario,
)
from sim.validation.cases import (
    CASES_DIR,
    ENGINE_TARGETS,
    METRIC_GROUPS,
    TARGETS,
    CaseResult,
    Expectation,
    ExpectationResult,
    MetricRef,
    RatioMetric,
    _display,
    _norm_sweep,
    load_case,
)

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


REPLICATIONS = 5
"""Seeds a case with speed noise is run with; each prediction is the median over them."""


def _has_noise(resolved: Any) -> bool:
    """Whether a resolved server, or any replica of a resolved fleet, runs with speed noise."""
    members = [*getattr(resolved, "members", []), *getattr(resolved, "prefill", [])]
    return not resolved.noise.is_zero or any(_has_noise(m) for m in members)


def _median(values: Any) -> Any:
    """The median of a metric over replications (non-numbers: the first run's value)."""
    xs = list(values)
    if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in xs):
        return xs[0]
    return statistics.median(xs) if len(xs) > 1 else xs[0]


def run_case(path: str | Path) -> CaseResult:
    """Simulate a case's scenario and compare every expectation."""
    import time

    from sim.simulation import resolve_servers, run, sweep_scenarios

    started = time.perf_counter()
    case, scenario = load_case(path)
    results = run(scenario)
    swept = {_norm_sweep(point): sc for point, sc in sweep_scenarios(scenario)}
    # A server with speed noise (sim/noise.py) makes each run one draw of a random outcome, like the
    # measured run: the prediction is the median over REPLICATIONS seeds (seed, seed + 1, ...).
    noisy = any(_has_noise(r) for sc in swept.values() for r in resolve_servers(sc))
    runs = [results] + [run(scenario.model_copy(update={"seed": scenario.seed + k}))
                        for k in range(1, REPLICATIONS if noisy else 1)]
    table: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, float]] = {}
    for replicate in zip(*runs, strict=True):
        r = replicate[0]
        key = _norm_sweep(r.sweep)
        rows = [{**x.metrics, **_derived(x, swept[key])} for x in replicate]
        table[(r.server, key)] = {m: _median(row[m] for row in rows) for m in rows[0]}
    only = scenario.servers[0].label
    engines = {r.server: r.engine for r in results}

    def value(ref: MetricRef, e: Expectation) -> float:
        server = ref.server or e.server or only
        sweep = ref.sweep if ref.sweep is not None else e.sweep
        return float(table[(server, _norm_sweep(sweep))][ref.metric])

    out = CaseResult(case.id, _display(Path(path)), case.source, case.credibility, case.notes,
                     replications=len(runs))
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
    # the same table over the published cases alone (measured by others): the pooled medians above
    # also count the project's own measurements, which can carry them
    summary["by_engine_published"] = by_engine([r for r in results if r.published])
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
    name = metric.removeprefix("steady.")  # the steady-window statistic belongs with its whole-run twin
    return next((g for g, names in METRIC_GROUPS.items() if name in names), "other")


def by_engine(results: Sequence[CaseResult]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per engine and metric group: median |error|, count, known failures (XFAIL) among them, and the
    target where there is one."""
    errs: dict[str, dict[str, list[float]]] = {}
    known: dict[tuple[str, str], int] = {}
    for r in results:
        for e in r.expectations:
            if math.isfinite(e.error):
                errs.setdefault(e.engine, {}).setdefault(metric_group(e.metric), []).append(abs(e.error))
                if e.status == "XFAIL":
                    known[e.engine, metric_group(e.metric)] = known.get((e.engine, metric_group(e.metric)), 0) + 1
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for engine, groups in sorted(errs.items()):
        out[engine] = {}
        for group in (*METRIC_GROUPS, "ratio", "other"):
            if group in groups:
                med = round(statistics.median(groups[group]), 4)
                target = ENGINE_TARGETS.get(group)
                out[engine][group] = {"median_abs_error": med, "n": len(groups[group]), "target": target,
                                      "met": None if target is None else med <= target,
                                      "known_failures": known.get((engine, group), 0)}
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


