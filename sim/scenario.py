"""Scenario files: pydantic specs (``extra="forbid"``, every field documented) and loading.

A scenario names a model, a piece of hardware, a workload and one or more servers, and
optionally a sweep over one dotted field. Relative paths inside a scenario (traces, length
tables, Hugging Face configs) are resolved against the scenario file's folder.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator

__all__ = [
    "ClosedLoopArrival",
    "LlamaCppSpec",
    "OllamaSpec",
    "PagedBatchingSpec",
    "Scenario",
    "ScenarioError",
    "SerialDecodeSpec",
    "SingleQueueSpec",
    "VllmSpec",
    "load_scenario",
    "with_override",
]


class ScenarioError(ValueError):
    """A scenario file is invalid; the message names the file, the field and the fix."""


class Spec(BaseModel):
    """Base of every scenario spec."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


# ---------------------------------------------------------------------------------------------
# Lengths and times
# ---------------------------------------------------------------------------------------------
class FixedLength(Spec):
    """Every request has the same length."""

    kind: Literal["fixed"] = "fixed"
    """Selects this variant (fixed)."""
    value: int = Field(ge=1)
    """Tokens."""


class UniformLength(Spec):
    """Integer length uniform on [low, high]."""

    kind: Literal["uniform"] = "uniform"
    """Selects this variant (uniform)."""
    low: int = Field(ge=1)
    """Smallest length (tokens)."""
    high: int = Field(ge=1)
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
    sigma: float = Field(ge=0, default=0.6)
    """Standard deviation of log(length)."""
    min: int = Field(ge=1, default=1)
    """Lengths below are raised to this."""
    max: int = Field(ge=1, default=1 << 20)
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
    max: int | None = Field(ge=1, default=None)
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
    ramp_up_s: float = Field(ge=0, default=0.0)
    """Users start evenly spread over this many seconds (0: all at once)."""
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


# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------
class ServerCommon(Spec):
    """Fields every server has."""

    name: str | None = None
    """Label in tables and plots (default: engine or kind)."""
    quantization: str | None = None
    """Weight format: q4_k_m, q5_k_m, q8_0, q4_0, f16 (GGUF); awq, gptq, fp8 (vLLM)."""
    kv_cache_dtype: str = "auto"
    """KV cache element type: auto (16-bit), fp8, q8_0, q4_0."""
    cost: CostSpec = Field(default_factory=RooflineCostSpec)
    """How long a forward pass takes."""
    threads: int | None = Field(ge=1, default=None)
    """CPU threads the engine computes with (CPU serving: picks the profile measured with them)."""

    @property
    def label(self) -> str:
        """Name shown in results."""
        return self.name or getattr(self, "engine", None) or getattr(self, "kind")


class OllamaSpec(ServerCommon):
    """Ollama: FIFO queue in front of ``num_parallel`` llama.cpp slots (ENGINES.md A.1)."""

    engine: Literal["ollama"] = "ollama"
    """Selects this variant (ollama)."""
    version: str = "0.12.0"
    """Ollama version; selects defaults that changed (NUM_PARALLEL 1 / auto 4 / auto 2 / 1; num_ctx)."""
    num_parallel: int | None = Field(ge=1, default=None)
    """OLLAMA_NUM_PARALLEL (default by version; 0.2-0.9 pick 4 or 2 if it fits in memory, else 1)."""
    num_ctx: int | None = Field(ge=16, default=None)
    """Context per slot (default by version: 2048 until 0.6.6, 4096 after)."""
    num_batch: int = Field(ge=1, default=512)
    """Prompt tokens per iteration."""
    runner: Literal["llamarunner", "ollamarunner", "llama-server"] | None = None
    """llamarunner: num_batch per prompting slot; ollamarunner: num_batch shared by all slots;
    llama-server: n_batch = num_batch with decode tokens first (default: llama-server from 0.30,
    llamarunner before)."""
    max_queue: int = Field(ge=1, default=512)
    """OLLAMA_MAX_QUEUE: requests held while a model loads before HTTP 503."""
    keep_alive_s: float = Field(ge=0, default=300.0)
    """Idle seconds before the model is unloaded."""
    load_time_s: float = Field(ge=0, default=0.0)
    """Seconds to load the model when it is not loaded."""
    cold_start: bool = False
    """The model is not loaded when the run starts."""


class LlamaCppSpec(ServerCommon):
    """llama.cpp ``llama-server``: slots, decode tokens first, then prompt chunks (ENGINES.md A.2)."""

    engine: Literal["llama.cpp"] = "llama.cpp"
    """Selects this variant (llama.cpp)."""
    version: str = "b7100"
    """Build (bNNNN); before b7079 (Nov 2025) -np defaulted to 1, after to 4 with a unified KV."""
    parallel: int | None = Field(ge=1, default=None)
    """-np, number of slots (default by version)."""
    ctx_size: int | None = Field(ge=16, default=None)
    """-c, total context, split across slots unless unified (default 4096, the default from Nov 2024;
    current builds default to the model's context shrunk to fit memory: give it explicitly to model that)."""
    batch_size: int = Field(ge=1, default=2048)
    """-b, logical batch: decode tokens plus prompt tokens per iteration."""
    ubatch_size: int = Field(ge=1, default=512)
    """-ub, physical batch: tokens per forward pass."""
    kv_unified: bool | None = None
    """--kv-unified (default: on only when -np is not given, in builds with auto -np)."""
    context_shift: bool | None = None
    """--context-shift (default by version: on in old builds, off in current ones)."""
    logits_all: bool = False
    """Compute logits (the LM head) for every prompt token, not only the last: llama-server never
    does; llama-cpp-python's OpenAI server does by default (its ``logits_all`` setting is True)."""


class VllmSpec(ServerCommon):
    """vLLM: paged KV cache and continuous batching (V1 engine; ``version < 0.8`` gives V0)."""

    engine: Literal["vllm"] = "vllm"
    """Selects this variant (vllm)."""
    version: str = "0.11.0"
    """vLLM version: < 0.8 is the V0 engine (prefill-first passes, no chunked prefill)."""
    dtype: str = "bf16"
    """--dtype for unquantized weights: bf16, fp16."""
    max_num_seqs: int | None = Field(ge=1, default=None)
    """Most requests running at once (default 256; 1024 on >= 70 GiB non-A100 GPUs in >= 0.10)."""
    max_num_batched_tokens: int | None = Field(ge=1, default=None)
    """Token budget per pass (default 2048; 8192 on >= 70 GiB non-A100 GPUs in >= 0.10)."""
    block_size: int = Field(ge=1, default=16)
    """Tokens per KV block."""
    gpu_memory_utilization: float = Field(gt=0, le=1, default=0.9)
    """Fraction of GPU memory vLLM may use (weights + activations + KV)."""
    max_model_len: int | None = Field(ge=16, default=None)
    """Longest prompt + output (default: the model's context length)."""
    enable_prefix_caching: bool | None = None
    """Prefix cache (default: on in V1, off in V0)."""
    enable_chunked_prefill: bool | None = None
    """Chunked prefill (always on in V1; off by default in V0)."""
    num_gpu_blocks_override: int | None = Field(ge=1, default=None)
    """Use exactly this many KV blocks instead of the memory-derived number."""


class SingleQueueSpec(ServerCommon):
    """Bare single-queue architecture: FIFO queue -> ``num_parallel`` slots with static KV."""

    kind: Literal["single_queue"] = "single_queue"
    """Selects this variant (single_queue)."""
    num_parallel: int = Field(ge=1, default=1)
    """Slots (c of M/G/c)."""
    num_ctx: int = Field(ge=2, default=4096)
    """Context per slot."""
    num_batch: int = Field(ge=1, default=512)
    """Prompt tokens per slot per iteration."""
    max_queue: int = Field(ge=1, default=512)
    """Requests held while loading before 503."""
    keep_alive_s: float = Field(ge=0, default=float("inf"))
    """Idle seconds before unloading."""
    load_time_s: float = Field(ge=0, default=0.0)
    """Seconds to load the model."""
    cold_start: bool = False
    """Not loaded at the start."""


class SerialDecodeSpec(ServerCommon):
    """Bare serial-decode / slot architecture (llama.cpp server knobs)."""

    kind: Literal["serial_decode"] = "serial_decode"
    """Selects this variant (serial_decode)."""
    parallel: int = Field(ge=1, default=1)
    """Slots (1 = strictly serial decoding)."""
    ctx_size: int = Field(ge=2, default=4096)
    """Total context, split evenly across slots unless kv_unified."""
    batch_size: int = Field(ge=1, default=2048)
    """Tokens per iteration (decode tokens first)."""
    ubatch_size: int = Field(ge=1, default=512)
    """Tokens per physical forward pass."""
    kv_unified: bool = False
    """One KV pool shared by all slots."""
    context_shift: bool = False
    """Truncate/shift instead of erroring/stopping on a full context."""
    logits_all: bool = False
    """LM head on every prompt token (llama-cpp-python's server default), not only the last."""


class PagedBatchingSpec(ServerCommon):
    """Bare paged continuous-batching architecture (vLLM knobs)."""

    kind: Literal["paged_batching"] = "paged_batching"
    """Selects this variant (paged_batching)."""
    max_num_seqs: int = Field(ge=1, default=256)
    """Most running requests."""
    max_num_batched_tokens: int = Field(ge=1, default=2048)
    """Token budget per pass."""
    block_size: int = Field(ge=1, default=16)
    """Tokens per KV block."""
    num_kv_blocks: int | None = Field(ge=1, default=None)
    """KV capacity in blocks (default: derived from gpu_memory_utilization)."""
    gpu_memory_utilization: float = Field(gt=0, le=1, default=0.9)
    """Fraction of memory for weights + activations + KV when num_kv_blocks is not given."""
    max_model_len: int | None = Field(ge=16, default=None)
    """Longest prompt + output accepted (longer requests get HTTP 400); at most the KV capacity.
    Default: the model's context length or the KV capacity, whichever is smaller."""
    enable_prefix_caching: bool = False
    """Reuse cached prompt blocks by hash."""
    enable_chunked_prefill: bool = True
    """Split prompts across passes under the token budget."""
    prefill_first: bool = False
    """vLLM V0 scheduling: whole-prompt passes first, decodes otherwise."""


def _server_tag(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("engine") or value.get("kind") or "missing")
    return str(getattr(value, "engine", None) or getattr(value, "kind", "missing"))


ServerSpec = Annotated[
    Annotated[OllamaSpec, Tag("ollama")]
    | Annotated[LlamaCppSpec, Tag("llama.cpp")]
    | Annotated[VllmSpec, Tag("vllm")]
    | Annotated[SingleQueueSpec, Tag("single_queue")]
    | Annotated[SerialDecodeSpec, Tag("serial_decode")]
    | Annotated[PagedBatchingSpec, Tag("paged_batching")],
    Discriminator(
        _server_tag,
        custom_error_type="server_kind",
        custom_error_message=(
            "each server needs engine: ollama | llama.cpp | vllm, "
            "or kind: single_queue | serial_decode | paged_batching"
        ),
    ),
]


class HfConfigModel(Spec):
    """A model given by its Hugging Face config.json."""

    hf_config: str
    """Path to config.json, relative to the scenario file."""
    id: str | None = None
    """Model id for cost-profile matching (default: from the config's name or folder)."""


class SweepSpec(Spec):
    """Run every server once per value of one dotted field."""

    path: str
    """Dotted field, e.g. workload.arrival.users."""
    values: list[Any] = Field(min_length=1)
    """Values to try, in order."""


class SloSpec(Spec):
    """Service-level objective for goodput (a request is good if it meets every bound given)."""

    ttft_ms: float | None = Field(gt=0, default=None)
    """Bound on time to first token."""
    tpot_ms: float | None = Field(gt=0, default=None)
    """Bound on time per output token."""
    e2el_ms: float | None = Field(gt=0, default=None)
    """Bound on end-to-end latency."""


class Scenario(Spec):
    """One what-if: a model on some hardware, a workload, the servers to compare."""

    name: str
    """Label used in tables, plots and result files."""
    seed: int = 0
    """Root of every random stream of the run."""
    model: str | HfConfigModel
    """Catalog model id (e.g. llama-3.1-8b) or {hf_config: path/to/config.json}."""
    hardware: str | dict[str, Any]
    """Catalog hardware id (e.g. rtx-4090) or an inline hardware spec."""
    workload: WorkloadSpec
    """Arrival process, lengths and client timeout."""
    servers: list[ServerSpec] = Field(min_length=1)
    """Servers to compare on the same workload (same seed, same requests)."""
    sweep: SweepSpec | None = None
    """Optional sweep over one field."""
    slo: SloSpec | None = None
    """Optional SLO for goodput."""
    base_dir: str = Field(default=".", exclude=True)
    """Folder relative paths are resolved against (set by load_scenario)."""

    def resolve(self, path: str) -> Path:
        """Resolve a path given in the scenario."""
        p = Path(path)
        return p if p.is_absolute() else Path(self.base_dir) / p


def _read_data(path: Path) -> Any:
    text = path.read_text()
    match path.suffix:
        case ".yaml" | ".yml":
            return yaml.safe_load(text)
        case ".toml":
            return tomllib.loads(text)
        case _:
            raise ScenarioError(f"{path}: expected a .yaml or .toml scenario, got {path.suffix!r}")


def format_validation_error(source: str, err: ValidationError) -> str:
    """One line per problem: the field's dotted path, what is wrong, and how to fix it."""
    lines = [f"{source} is not a valid scenario:"]
    for e in err.errors():
        loc = ".".join(str(part) for part in e["loc"] if not str(part).startswith("function-"))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field; remove it or check its spelling (see `servesim check --help`)"
        elif e["type"] == "missing":
            msg = "required field is missing; add it"
        lines.append(f"  - {loc or '(top level)'}: {msg}")
    return "\n".join(lines)


def parse_scenario(data: Any, source: str = "<scenario>", base_dir: str = ".") -> Scenario:
    """Validate a scenario given as plain data."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario must be a mapping of fields, got {type(data).__name__}")
    try:
        return Scenario.model_validate({**data, "base_dir": base_dir})
    except ValidationError as err:
        raise ScenarioError(format_validation_error(source, err)) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read a YAML or TOML scenario file and validate it."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(f"{path}: no such scenario file; check the path")
    try:
        data = _read_data(path)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as err:
        raise ScenarioError(f"{path}: not valid YAML/TOML: {err}") from None
    return parse_scenario(data, str(path), str(path.parent))


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value as YAML (numbers, booleans, lists), else keep the string."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def with_override(scenario: Scenario, path: str, value: Any) -> Scenario:
    """Return a copy with the dotted field ``path`` set to ``value`` (re-validated).

    ``servers.vllm.max_num_seqs`` addresses a server by its label; ``servers.0.x`` by index.
    """
    data = scenario.model_dump(mode="python", exclude_none=False)
    *parents, leaf = path.split(".")
    node: Any = data
    for key in parents:
        node = _child(node, key, path)
    if isinstance(node, list):
        raise ScenarioError(f"--set {path}: cannot set a whole list element; name a field inside it")
    if not isinstance(node, dict):
        raise ScenarioError(f"--set {path}: {'.'.join(parents)} is not a mapping")
    node[leaf] = value
    return parse_scenario(_drop_none(data), f"{scenario.name} with {path}={value!r}", scenario.base_dir)


def _child(node: Any, key: str, path: str) -> Any:
    if isinstance(node, list):
        if key.isdigit() and int(key) < len(node):
            return node[int(key)]
        for item in node:
            if isinstance(item, dict) and key in (item.get("name"), item.get("engine"), item.get("kind")):
                return item
        raise ScenarioError(f"--set {path}: no list element named {key!r}")
    if not isinstance(node, dict) or key not in node or node[key] is None:
        if isinstance(node, dict):
            node[key] = {}
            return node[key]
        raise ScenarioError(f"--set {path}: {key!r} is not a field here")
    return node[key]


def _drop_none(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _drop_none(v) for k, v in data.items() if v is not None and k != "base_dir"}
    if isinstance(data, list):
        return [_drop_none(v) for v in data]
    return data
