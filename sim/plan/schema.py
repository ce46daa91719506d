"""The plan file: traffic, SLO, candidates, pricing and search settings (``servesim plan``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import Field, ValidationError, model_validator

from sim.scenario import ScenarioError, ServerSpec, Spec, format_validation_error
from sim.scenario.document import HfConfigModel
from sim.scenario.workload import ClosedLoopArrival, PoissonArrival, TraceArrival, WorkloadSpec

__all__ = ["PlanSpec", "load_plan", "parse_plan"]

QUANTILES = {"p50": "median", "p90": "p90", "p99": "p99", "mean": "mean"}
"""Quantile name in a plan -> prefix of the metric (``vllm bench serve`` names)."""


class Bounds(Spec):
    """Upper bounds on one latency at some quantiles (milliseconds)."""

    p50: float | None = Field(gt=0, default=None)
    """Median."""
    p90: float | None = Field(gt=0, default=None)
    """90th percentile."""
    p99: float | None = Field(gt=0, default=None)
    """99th percentile."""
    mean: float | None = Field(gt=0, default=None)
    """Mean."""


class Goodput(Spec):
    """A request is good when it completes within every bound given; at least ``min_share`` of
    the requests sent must be good."""

    ttft_ms: float | None = Field(gt=0, default=None)
    """Bound on time to first token."""
    tpot_ms: float | None = Field(gt=0, default=None)
    """Bound on time per output token."""
    e2el_ms: float | None = Field(gt=0, default=None)
    """Bound on end-to-end latency."""
    min_share: float = Field(gt=0, le=1)
    """Smallest share of good requests (e.g. 0.95)."""


class PlanSlo(Spec):
    """The service-level objective every replica count is judged by (means over seeds)."""

    ttft_ms: Bounds | None = None
    """Time to first token."""
    tpot_ms: Bounds | None = None
    """Time per output token."""
    itl_ms: Bounds | None = None
    """Inter-token latency."""
    e2el_ms: Bounds | None = None
    """End-to-end latency."""
    max_timeout_share: float | None = Field(ge=0, le=1, default=None)
    """Largest share of the requests sent that time out."""
    max_rejection_share: float | None = Field(ge=0, le=1, default=None)
    """Largest share of the requests sent that are rejected."""
    goodput: Goodput | None = None
    """Minimum share of requests meeting per-request bounds."""

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.bounds():
            raise ValueError("give at least one bound, e.g. ttft_ms: {p99: 1000}")
        return self

    def bounds(self) -> dict[str, float]:
        """Metric name -> largest allowed value (shares for timeouts, rejections; the goodput
        floor is stored as a ceiling on the bad share, ``bad_share``)."""
        out: dict[str, float] = {}
        for name in ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms"):
            b: Bounds | None = getattr(self, name)
            if b is not None:
                for q, prefix in QUANTILES.items():
                    value = getattr(b, q)
                    if value is not None:
                        out[f"{prefix}_{name}"] = value
        if self.max_timeout_share is not None:
            out["timeout_share"] = self.max_timeout_share
        if self.max_rejection_share is not None:
            out["rejection_share"] = self.max_rejection_share
        if self.goodput is not None:
            out["bad_share"] = 1 - self.goodput.min_share
        return out


class Traffic(Spec):
    """The load the fleet must carry."""

    workload: WorkloadSpec
    """The whole fleet's requests: poisson (rate_per_s), closed_loop (users) or a trace; lengths
    and timeout as in a scenario. num_requests (or the trace) sets each simulation's size."""
    growth: float = Field(gt=0, default=1.0)
    """Plan for this multiple of the workload's rate (users for closed loop; trace speed-up)."""

    @model_validator(mode="after")
    def _supported(self) -> Self:
        if not isinstance(self.workload.arrival, PoissonArrival | ClosedLoopArrival | TraceArrival):
            raise ValueError(
                f"arrival kind {self.workload.arrival.kind!r} is not plannable yet; use poisson, closed_loop or trace"
            )
        return self


class Replicas(Spec):
    """How many replicas of a candidate may be used."""

    min: int = Field(ge=1, default=1)
    """Fewest replicas."""
    max: int = Field(ge=1, default=64)
    """Most replicas."""

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        return self


class Candidates(Spec):
    """Every combination of a server and a hardware id is a candidate."""

    servers: list[ServerSpec] = Field(min_length=1)
    """Engine configurations (engine, version, quantization, knobs), as in a scenario."""
    hardware: list[str] = Field(min_length=1)
    """Catalog hardware ids, one replica = one device."""
    tensor_parallel: list[int] = Field(default=[1], min_length=1)
    """TP sizes: a vLLM server is a candidate at each size n on ``n x hardware`` (one replica =
    n GPUs, priced and powered as n); other engines at 1 only."""
    router: Literal["random"] = "random"
    """How requests are spread over replicas (random: each replica sees 1/N of the traffic)."""
    replicas: Replicas = Replicas()
    """Range of replica counts."""

    @model_validator(mode="after")
    def _tp(self) -> Self:
        sizes = self.tensor_parallel
        if any(n < 1 for n in sizes) or len(set(sizes)) != len(sizes):
            raise ValueError(f"tensor_parallel {sizes} must be distinct sizes >= 1, e.g. [1, 2]")
        if any(n > 1 for n in sizes) and not any(getattr(s, "engine", None) == "vllm" for s in self.servers):
            raise ValueError(f"tensor_parallel {sizes}: only vLLM servers run tensor parallel; "
                             "add a vllm server or use [1]")
        for s in self.servers:
            spread = [f"{k} {getattr(s, k)}" for k in ("tensor_parallel_size", "pipeline_parallel_size",
                                                        "data_parallel_size") if getattr(s, k, 1) != 1]
            if spread:
                raise ValueError(f"server {s.label!r} sets {', '.join(spread)}; in a plan, one replica's GPUs "
                                 "come from candidates.tensor_parallel (e.g. tensor_parallel: [1, 2])")
        return self


class PriceOverride(Spec):
    """A price given in the plan instead of the catalog's."""

    usd_per_gpu_hour: float | None = Field(ge=0, default=None)
    """Rental price per GPU-hour."""
    usd_purchase: float | None = Field(ge=0, default=None)
    """Purchase price of one unit (owned)."""


class PowerOverride(Spec):
    """Power of one device given in the plan: a logistic from ``idle_w`` to ``max_w``."""

    idle_w: float = Field(ge=0)
    """Power with nothing running."""
    max_w: float = Field(gt=0)
    """Power at a large batch."""
    k: float = Field(gt=0, default=1.0)
    """Steepness in log2(batch)."""
    x0: float = 4.0
    """log2 of the batch at the midpoint."""


class Pricing(Spec):
    """How an hour of a device is priced."""

    offering: Literal["on-demand", "spot", "reserved", "on-demand (marketplace)", "owned"] = "on-demand"
    """Rental offering from the price catalog, or ``owned`` (purchase amortised plus energy)."""
    provider: str | None = None
    """Catalog provider (e.g. AWS, GCP, Lambda); default the cheapest credible row."""
    years: float | None = Field(gt=0, default=None)
    """Owned: years of round-the-clock service the purchase is spread over (required)."""
    usd_per_kwh: float | None = Field(ge=0, default=None)
    """Owned: electricity price (required; e.g. 0.1199, EIA, Pennsylvania commercial, 2025-04)."""
    pue: float | None = Field(ge=1, default=None)
    """Owned: facility power usage effectiveness (required; e.g. 1.58, Uptime Institute 2023)."""
    overrides: dict[str, PriceOverride] = {}
    """Per hardware id: a price given here instead of the catalog's."""

    @model_validator(mode="after")
    def _owned(self) -> Self:
        if self.offering == "owned":
            missing = [n for n in ("years", "usd_per_kwh", "pue") if getattr(self, n) is None]
            if missing:
                raise ValueError(f"owned hardware needs {', '.join(missing)} stated "
                                 "(e.g. years: 4, usd_per_kwh: 0.12, pue: 1.3)")
        return self


class Search(Spec):
    """How hard the planner looks."""

    seeds: int = Field(ge=1, default=3)
    """Simulations per deciding point (common random numbers: seeds plan.seed, +1, ...)."""
    confidence: float = Field(gt=0, lt=1, default=0.95)
    """Level of the reported confidence intervals (Student t over seeds)."""
    rel_tol: float = Field(gt=0, default=0.05)
    """Bisection stops when the bracket of the sustainable rate is this narrow (relative)."""
    screen_margin: float = Field(ge=0, default=0.5)
    """A candidate is simulated only while its analytic cost floor is below (1 + margin) x
    the cheapest plan simulated so far."""
    pareto_metric: str = "p99_e2el_ms"
    """The tail latency the Pareto front trades against cost."""


class PlanSpec(Spec):
    """A capacity plan: the cheapest fleet that carries the traffic within the SLO."""

    name: str
    """Label of the plan."""
    seed: int = 0
    """First seed of the simulations."""
    model: str | HfConfigModel
    """Catalog model id or {hf_config: path}."""
    traffic: Traffic
    """Load to carry."""
    slo: PlanSlo
    """Objective."""
    candidates: Candidates
    """What may carry it."""
    pricing: Pricing = Pricing()
    """How devices are priced."""
    power: dict[str, PowerOverride] = {}
    """Per hardware id: power given here instead of the catalog's model."""
    search: Search = Search()
    """Search settings."""
    base_dir: str = Field(default=".", exclude=True)
    """Folder relative paths are resolved against (set by load_plan)."""


def parse_plan(data: Any, source: str = "<plan>", base_dir: str = ".") -> PlanSpec:
    """Validate a plan given as plain data (ScenarioError with every bad field)."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a plan must be a mapping of fields, got {type(data).__name__}")
    try:
        return PlanSpec.model_validate({**data, "base_dir": base_dir})
    except ValidationError as err:
        raise ScenarioError(format_validation_error(source, err).replace("valid scenario", "valid plan")) from None


def load_plan(path: str | Path) -> PlanSpec:
    """Read a YAML plan file."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(f"{path}: no such plan file; check the path")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ScenarioError(f"{path}: not valid YAML: {err}") from None
    return parse_plan(data, str(path), str(path.parent))
