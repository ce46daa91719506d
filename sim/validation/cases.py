"""Validation case files: their schema (expectations, ratios, bounds, known failures) and loading."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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

CASES_DIR = Path(__file__).resolve().parents[2] / "calibration" / "validation"
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
    replications: int = 1
    """Runs (seeds) whose median each prediction is: more than one when a server has speed noise."""

    @property
    def published(self) -> bool:
        """Measured by others and published (the source is a URL), not by this project."""
        return self.source.startswith(("http://", "https://"))

    def row(self) -> dict[str, Any]:
        return {"id": self.id, "file": self.file, "source": self.source, "credibility": self.credibility,
                "notes": self.notes, "published": self.published, "seconds": round(self.seconds, 2),
                "replications": self.replications,
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


