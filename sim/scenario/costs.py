"""Cost specs of a server: how long a forward pass takes, and the front end around it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from sim.scenario.base import Spec


# ---------------------------------------------------------------------------------------------
# Costs
# ---------------------------------------------------------------------------------------------
class RooflineCostSpec(Spec):
    """Roofline step cost from model x hardware x format, with fitted engine efficiencies."""

    kind: Literal["roofline"] = "roofline"
    """Selects this variant (roofline)."""
    profile: str | None = None
    """Cost profile file (calibration/profiles/*.yaml) or id; default: best catalog match."""
    bandwidth_efficiency: float | None = Field(gt=0, le=1.5, default=None)
    """Override: achieved fraction of peak memory bandwidth."""
    compute_efficiency: float | None = Field(gt=0, le=1.5, default=None)
    """Override: achieved fraction of peak GEMM throughput."""
    attention_efficiency: float | None = Field(gt=0, le=1.5, default=None)
    """Override: achieved fraction of peak 16-bit throughput in attention."""
    step_overhead_s: float | None = Field(ge=0, default=None)
    """Override: fixed seconds per physical forward pass."""
    seq_overhead_s: float | None = Field(ge=0, default=None)
    """Override: seconds per sequence in a pass (sampling, bookkeeping)."""
    decode_batch_scale: dict[int, float] | None = None
    """Override: GEMM-time multiplier of a pure decode pass by its number of sequences (knots)."""


class ConstantCostSpec(Spec):
    """Every pass takes ``step_s`` (exact timelines, teaching)."""

    kind: Literal["constant"] = "constant"
    """Selects this variant (constant)."""
    step_s: float = Field(gt=0)
    """Seconds per pass."""


class LinearCostSpec(Spec):
    """t = overhead + per prompt token + per decoding sequence + per attended context token."""

    kind: Literal["linear"] = "linear"
    """Selects this variant (linear)."""
    overhead_s: float = Field(ge=0, default=0.0)
    """Fixed seconds per pass."""
    prefill_s_per_token: float = Field(ge=0, default=0.0)
    """Seconds per prompt token."""
    decode_s_per_seq: float = Field(ge=0, default=0.0)
    """Seconds per decoding sequence."""
    attention_s_per_context_token: float = Field(ge=0, default=0.0)
    """Seconds per context token attended by decoding sequences."""


class ServiceDistribution(Spec):
    """Whole-request service time distribution (queueing-theory anchor)."""

    kind: Literal["exponential", "deterministic", "gamma", "lognormal"]
    """Distribution family."""
    mean_s: float = Field(gt=0)
    """Mean service time (seconds)."""
    cv: float = Field(ge=0, default=1.0)
    """Coefficient of variation (gamma, lognormal)."""


class SampledServiceSpec(Spec):
    """Each request holds its slot for an i.i.d. sampled time: the server becomes M/G/c."""

    kind: Literal["sampled"] = "sampled"
    """Selects this variant (sampled)."""
    distribution: ServiceDistribution
    """Service-time distribution."""


CostSpec = Annotated[
    RooflineCostSpec | ConstantCostSpec | LinearCostSpec | SampledServiceSpec, Field(discriminator="kind")
]


class FrontendSpec(Spec):
    """Costs outside the forward pass (API layer, tokenisation, streaming): sim/frontend.py."""

    profile: str | None = None
    """Front-end profile id (calibration/profiles/frontend/), or none; default: the fitted
    profile for the engine, version and hardware class (engines), none (bare architectures)."""
    request_s: float | None = Field(ge=0, default=None)
    """Override: seconds per request before the engine sees it (not occupying the engine)."""
    serial: bool | None = None
    """Override: request_s served by one worker, first come first served (vLLM's API process)."""
    token_s: float | None = Field(ge=0, default=None)
    """Override: seconds per sampled sequence per pass, inside the engine loop."""
    step_s: float | None = Field(ge=0, default=None)
    """Override: seconds per pass, inside the engine loop."""


class SpeedNoiseSpec(Spec):
    """The machine's speed noise: each pass lasts its priced time times a slowly varying factor
    of mean 1 (sim/noise.py)."""

    profile: str | None = None
    """Speed-noise profile id (calibration/profiles/noise/), or none; default: the profile fitted
    on this hardware's own one-user server runs, none for hardware without one."""
    cv: float | None = Field(ge=0, le=1, default=None)
    """Override: coefficient of variation of the speed factor (0: no noise)."""
    correlation_s: float | None = Field(gt=0, default=None)
    """Override: correlation time of the factor's logarithm (seconds)."""
    interval_s: float | None = Field(ge=1e-4, default=None)
    """Override: how long the factor holds one value (default: correlation_s / 4)."""
