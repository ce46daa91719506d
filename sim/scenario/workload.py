"""Workload specs: prompt/output lengths, think times, arrival processes."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import (
    Field,
    model_validator,
)

from sim.scenario.base import MAX_TOKENS, Spec


# ---------------------------------------------------------------------------------------------
# Lengths and times
# ---------------------------------------------------------------------------------------------
class FixedLength(Spec):
    """Every request has the same length."""

    kind: Literal["fixed"] = "fixed"
    """Selects this variant (fixed)."""
    value: int = Field(ge=1, le=MAX_TOKENS)
    """Tokens."""


class UniformLength(Spec):
    """Integer length uniform on [low, high]."""

    kind: Literal["uniform"] = "uniform"
    """Selects this variant (uniform)."""
    low: int = Field(ge=1, le=MAX_TOKENS)
    """Smallest length (tokens)."""
    high: int = Field(ge=1, le=MAX_TOKENS)
    """Largest length (tokens), inclusive."""

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high}); swap them")
        return self


class LogNormalLength(Spec):
    """Log-normal length with the given mean, rounded and clipped to [min, max]."""

    kind: Literal["lognormal"] = "lognormal"
    """Selects this variant (lognormal)."""
    mean: float = Field(gt=0)
    """Mean length (tokens) before rounding and clipping."""
    sigma: float = Field(ge=0, le=10, default=0.6)
    """Standard deviation of log(length) (at most 10)."""
    min: int = Field(ge=1, le=MAX_TOKENS, default=1)
    """Lengths below are raised to this."""
    max: int = Field(ge=1, le=MAX_TOKENS, default=1 << 20)
    """Lengths above are lowered to this."""


class EmpiricalLength(Spec):
    """Lengths resampled from a file: a length table (ShareGPT, arXiv) or any trace file.

    When ``prompt_tokens`` and ``output_tokens`` both name the same file, whole rows are
    sampled, so the correlation between prompt and output lengths in the file is kept.
    """

    kind: Literal["empirical"] = "empirical"
    """Selects this variant (empirical)."""
    path: str
    """Length table or trace file, relative to the scenario file."""
    scale: float = Field(gt=0, default=1.0)
    """Multiply every length by this (rounded, at least 1)."""
    max: int | None = Field(ge=1, le=MAX_TOKENS, default=None)
    """Clip lengths above this."""


LengthSpec = Annotated[
    FixedLength | UniformLength | LogNormalLength | EmpiricalLength, Field(discriminator="kind")
]


class ThinkTime(Spec):
    """Pause of a closed-loop user between a response and its next request."""

    kind: Literal["fixed", "exponential"] = "fixed"
    """``fixed``: always ``mean_s``; ``exponential``: exponentially distributed with mean ``mean_s``."""
    mean_s: float = Field(ge=0, default=0.0)
    """Mean think time in seconds."""


# ---------------------------------------------------------------------------------------------
# Arrivals
# ---------------------------------------------------------------------------------------------
class PoissonArrival(Spec):
    """Open loop, exponential inter-arrival times."""

    kind: Literal["poisson"] = "poisson"
    """Selects this variant (poisson)."""
    rate_per_s: float = Field(gt=0)
    """Mean arrival rate (requests per second)."""


class GammaArrival(Spec):
    """Open loop, gamma inter-arrival times (``vllm bench serve --burstiness``).

    vLLM draws inter-arrival times from Gamma(shape=burstiness, scale=1/(rate*burstiness)):
    burstiness 1 is Poisson, below 1 burstier, above 1 more regular. ``cv`` is the same
    thing expressed as the coefficient of variation of the gaps: burstiness = 1/cv^2.
    """

    kind: Literal["gamma"] = "gamma"
    """Selects this variant (gamma)."""
    rate_per_s: float = Field(gt=0)
    """Mean arrival rate (requests per second)."""
    burstiness: float | None = Field(gt=0, default=None)
    """Gamma shape, as vllm bench serve's --burstiness."""
    cv: float | None = Field(gt=0, default=None)
    """Coefficient of variation of inter-arrival gaps (alternative to burstiness)."""

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.burstiness is None) == (self.cv is None):
            raise ValueError("give exactly one of burstiness or cv (burstiness = 1/cv^2)")
        return self

    @property
    def shape(self) -> float:
        """Gamma shape k of the inter-arrival gaps."""
        return self.burstiness if self.burstiness is not None else 1.0 / self.cv**2  # type: ignore[operator]


class ConstantArrival(Spec):
    """Open loop, evenly spaced arrivals."""

    kind: Literal["constant"] = "constant"
    """Selects this variant (constant)."""
    rate_per_s: float = Field(gt=0)
    """Arrival rate (requests per second)."""


class RampArrival(Spec):
    """Open loop, Poisson with a rate rising (or falling) linearly over ``duration_s``."""

    kind: Literal["ramp"] = "ramp"
    """Selects this variant (ramp)."""
    start_rate_per_s: float = Field(ge=0)
    """Rate at t = 0."""
    end_rate_per_s: float = Field(ge=0)
    """Rate at t = duration_s."""
    duration_s: float = Field(gt=0)
    """Length of the ramp (arrivals stop at its end)."""


class Phase(Spec):
    """One phase of a multi-phase load."""

    duration_s: float = Field(gt=0)
    """Length of the phase."""
    rate_per_s: float = Field(gt=0)
    """Mean arrival rate in the phase."""
    burstiness: float = Field(gt=0, default=1.0)
    """Gamma shape of the gaps, as vllm bench serve --burstiness (1 = Poisson)."""


class PhasesArrival(Spec):
    """Open loop, a sequence of phases with their own rates (e.g. warm-up, peak, cool-down)."""

    kind: Literal["phases"] = "phases"
    """Selects this variant (phases)."""
    phases: list[Phase] = Field(min_length=1)
    """Phases, in order."""


class ClosedLoopArrival(Spec):
    """Closed loop: ``users`` each send a request, wait for the response (or its timeout), think, repeat."""

    kind: Literal["closed_loop"] = "closed_loop"
    """Selects this variant (closed_loop)."""
    users: int = Field(ge=1)
    """Concurrent users (the benchmark's concurrency)."""
    think_time_s: float = Field(ge=0, default=0.0)
    """Fixed pause between a response and the next request (shorthand for think_time)."""
    think_time: ThinkTime | None = None
    """Think-time distribution (overrides think_time_s)."""
    ramp_up_s: float = Field(ge=0, default=0.0, allow_inf_nan=False)
    """Users start evenly spread over this many seconds (user u at u x ramp_up_s / users);
    0: no ramp (see start_spread_s)."""
    start_spread_s: float = Field(ge=0, default=1.0, allow_inf_nan=False)
    """Without a ramp, each user sends its first request at an offset drawn uniformly from
    [0, start_spread_s) with the scenario's seed, as load generators start their users one by
    one; so users are not in lock-step. 0: every user starts at t = 0 (servesim 0.1)."""
    turns: int = Field(ge=1, default=1)
    """Turns per conversation: each next prompt carries the whole history (previous prompts and
    answers) plus a new message drawn from prompt_tokens, so prefix caches can reuse it."""


class TraceArrival(Spec):
    """Replay the arrival times (and, by default, the lengths) of a request trace."""

    kind: Literal["trace"] = "trace"
    """Selects this variant (trace)."""
    path: str
    """Trace file, relative to the scenario file."""
    format: Literal["auto", "azure2023", "azure2024", "mooncake", "vidur", "burstgpt", "vllm_bench"] = "auto"
    """File format; ``auto`` detects it from the header."""
    speedup: float = Field(gt=0, default=1.0)
    """Divide inter-arrival times by this (2 = twice the rate)."""
    window_s: tuple[float, float] | None = None
    """Keep arrivals in [start, end) seconds from the trace start."""
    length_scale: float = Field(gt=0, default=1.0)
    """Multiply prompt and output lengths by this."""
    use_lengths: bool = True
    """Take lengths from the trace (else from workload.prompt_tokens/output_tokens)."""
    limit: int | None = Field(ge=1, default=None)
    """Keep only the first N requests."""
    max_context_tokens: int | Literal["model"] | None = None
    """Clip prompt + output to this many tokens (``model``: the model's context length)."""


ArrivalSpec = Annotated[
    PoissonArrival | GammaArrival | ConstantArrival | RampArrival | PhasesArrival | ClosedLoopArrival | TraceArrival,
    Field(discriminator="kind"),
]


class WorkloadSpec(Spec):
    """Who sends what, when."""

    arrival: ArrivalSpec
    """Arrival process."""
    prompt_tokens: LengthSpec | None = None
    """Prompt length distribution (required unless a trace supplies lengths)."""
    output_tokens: LengthSpec | None = None
    """Output length distribution; the server generates exactly this many tokens (ignore_eos)."""
    num_requests: int | None = Field(ge=1, default=None)
    """Requests to send (the run then drains)."""
    duration_s: float | None = Field(gt=0, default=None)
    """Send requests for this long instead of a fixed count."""
    timeout_s: float | None = Field(gt=0, default=None)
    """Client timeout: the client disconnects and the engine cancels the request."""
    warmup_requests: int | None = Field(ge=0, default=None)
    """Requests excluded from statistics at the start (default: 10 % of requests)."""

    @model_validator(mode="after")
    def _complete(self) -> Self:
        trace_lengths = isinstance(self.arrival, TraceArrival) and self.arrival.use_lengths
        if not trace_lengths and (self.prompt_tokens is None or self.output_tokens is None):
            raise ValueError(
                "prompt_tokens and output_tokens are required (e.g. {kind: fixed, value: 128}) "
                "unless arrival is a trace with use_lengths: true"
            )
        self_timed = isinstance(self.arrival, TraceArrival | RampArrival | PhasesArrival)
        if not self_timed and self.num_requests is None and self.duration_s is None:
            raise ValueError("give num_requests (e.g. 1000) or duration_s (e.g. 600)")
        return self


