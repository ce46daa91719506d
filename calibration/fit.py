"""Fit the roofline cost model's engine efficiencies to measured step times.

One fit per group of measurements sharing (engine, hardware, model, weight format, threads):
the five :class:`~sim.profiles.CostParams` are found by ``scipy.optimize.least_squares`` on the
relative error of every measured pass time, each row's squared error weighted by
``sqrt(num_steps)`` (the number of passes it averages: a mean of many short passes is more
precise than one pass, but not n times more, since the machine's drift (±8 %) does not average
out). A measured pass is predicted by the very
:class:`~sim.costs.RooflineStepCost` the simulator builds (:func:`sim.engines.build_cost`, with
every parameter given as an override), so a fitted profile means the same thing in a scenario.
A :class:`~calibration.measurements.LatencyMeasurement` (a request-level total) is predicted as
the sum of its passes.

Identifiability. Parameters the data cannot identify are **fixed at the prior** (the hand
prior of ``calibration/profiles/priors.yaml`` that applies to the group), never guessed:

* parameters are tried in the order of :data:`PRIORITY`; each is kept free when doubling it
  (efficiencies) or adding a quarter of the group's median pass time (``step_overhead_s``; for
  ``seq_overhead_s`` a quarter of the median time per sequence) changes the weighted
  predictions by at least :data:`IDENTIFY_RMS` (RMS of relative change) *after* the
  parameters already kept have compensated as best they can (Gram-Schmidt on the Jacobian).
  A parameter that only acts together with another one (``seq_overhead_s`` when every pass
  holds one sequence) or not at all (attention efficiency when all contexts are short) is
  therefore fixed. The test is made at the prior, then repeated at the fit until it is stable.
* the free parameters also carry a weak ridge penalty (:data:`RIDGE` per unit of the scales
  above) toward the prior, which only matters in nearly degenerate directions.

Efficiencies are bounded to [0.01, 1.2] (a fit at 1.2 says the catalog's peak is too low, and
the report flags it), overheads to >= 0.

Groups with data also give **class priors**: per (engine, hardware kind), the median of each
parameter over the groups where it was fitted (else the hand prior), written to
``fitted-priors.yaml`` so that hardware nobody measured gets a documented prediction. Ollama
runs llama.cpp's kernels (ENGINES.md A.1), so its class priors copy llama.cpp's.

Fits are cached: each profile records an ``input_hash`` over the measurements, the catalog
entries, the prior and the code (this module and the cost model); a fit whose hash matches the
existing profile's is not redone unless ``force``. Vidur's profiles are skipped (see
:data:`SKIPPED_ENGINES`).
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy.optimize import least_squares

from calibration.fit_batching import batched_decode_rows, fit_decode_scale
from calibration.measurements import (
    PUBLISHED_FILE,
    REPO_ROOT,
    LatencyMeasurement,
    MeasurementError,
    StepMeasurement,
    file_sha256,
    repo_relative,
)
from calibration.readers import (
    load_measurements,
    read_published_latency,
    read_published_steps,
)
from sim import costs as _costs_module
from sim import engines as _engines
from sim.catalog import HardwareSpec, ModelSpec, WeightFormat, get_format, get_hardware, get_model
from sim.costs import RooflineStepCost
from sim.profiles import CostParams, CostProfile
from sim.scenario import RooflineCostSpec, SerialDecodeSpec
from sim.shapes import BatchShape

__all__ = [
    "DEFAULT_INPUTS",
    "PROFILES_DIR",
    "FitReport",
    "GroupKey",
    "Point",
    "class_priors",
    "fit_all",
    "fit_profile",
    "hand_prior",
    "load_points",
    "predict",
    "roofline_cost",
]

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
HAND_PRIORS = PROFILES_DIR / "priors.yaml"
PRIORS_FILE = "fitted-priors.yaml"
DEFAULT_INPUTS = (
    "calibration/data/this_machine/manifest.yaml",
    "calibration/data/published/microbenchmarks.json",
    "calibration/data/gpu/manifest.yaml",
    "calibration/data/published/batched_bench_gpu.json",
)
"""The calibration set: step-level files measured on the developers' machine, the published
microbenchmarks (step rows and vLLM CI latency) and whole forward passes timed on lent H100/H200
GPUs (calibration/gpu/measure_forward.py). Validation data is never among them."""
OLLAMA_COPIES = True
"""Write an Ollama copy of every llama.cpp profile (group fits and class priors)."""
PUBLISHED_LATENCY_CASES = ("vllm_ci_h200_latency", "vllm_ci_h100_latency")
SKIPPED_ENGINES = {
    "vidur-sarathi": (
        "Vidur rows time single operators (linear layers only, or attention only) of one layer "
        "under Vidur's profiler: no LM head, sampling or per-step overhead, and not an engine "
        "servesim simulates; fitting the whole-pass roofline to them would mis-state every "
        "parameter but one"
    ),
}

PARAMS = (
    "bandwidth_efficiency",
    "compute_efficiency",
    "attention_efficiency",
    "step_overhead_s",
    "seq_overhead_s",
)
PRIORITY = (
    "bandwidth_efficiency",
    "compute_efficiency",
    "step_overhead_s",
    "attention_efficiency",
    "seq_overhead_s",
)
"""Order in which parameters are admitted as free (most physically dominant first)."""
EFFICIENCIES = ("bandwidth_efficiency", "compute_efficiency", "attention_efficiency")
EFFICIENCY_BOUNDS = (0.01, 1.2)
OVERHEAD_UNIT = 0.25
"""An overhead's scale: this fraction of the median pass time (per sequence for seq_overhead)."""
IDENTIFY_RMS = 0.03
"""A parameter is free when one unit of it moves the predictions by >= 3 % RMS, after
compensation by the parameters already free."""
RIDGE = 0.01
"""Weight of the pull toward the prior, per unit (a doubling, or an overhead unit)."""
SIG_DIGITS = 4
"""Fitted values are rounded to this many significant digits before residuals are reported."""
FIT_VERSION = "1"
NEEDED_RMS = 0.005
NEEDED_REL = 0.05
"""A free parameter is kept only if fixing it at the prior would raise the weighted RMS relative
error by more than max(NEEDED_RMS, NEEDED_REL x that error)."""
MIN_GEMM_TOKENS = 32
"""compute_efficiency is fitted only from groups with a pass of at least this many tokens.
Smaller passes run matrix-vector kernels (llama.cpp CUDA: MMVQ up to 8 tokens) whose time
grows with the tokens in a way max(memory, compute) cannot express: a compute efficiency
fitted on them alone would price a 512-token prompt many times too slowly."""
LLAMA_CPP_UBATCH = 512
"""Physical pass size of llama.cpp / Ollama (-ub, num_batch) used when pricing measured passes
(the readers already split prompts into physical passes, so no measured pass exceeds it)."""


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class GroupKey:
    """What one fitted profile applies to."""

    engine: str
    hardware: str
    model: str
    weight_format: str
    threads: int | None = None

    @property
    def profile_id(self) -> str:
        """``fitted-<engine>-<hardware>-<model>-<format>[-t<threads>]``."""
        base = f"fitted-{self.engine}-{self.hardware}-{self.model}-{self.weight_format}"
        return base + (f"-t{self.threads}" if self.threads is not None else "")

    def __str__(self) -> str:
        return self.profile_id.removeprefix("fitted-")


@dataclass(frozen=True)
class Point:
    """One measured number to fit: a pass (or a run of passes) and its measured seconds."""

    shapes: tuple[BatchShape, ...]
    """Passes whose summed cost is measured (one for a step measurement)."""
    measured_s: float
    weight: float
    """Passes averaged into the number (num_steps; samples for a latency total)."""
    source: str
    """Where the number comes from: repo-relative file or URL."""
    label: str
    """Which row of the source (reader notes)."""
    input_file: str
    """Repo-relative file the fit read it from (manifest entries: the data file)."""
    input_sha256: str
    software: str
    date: str
    hardware: str
    via: str = ""
    """The file named on the command line it was read through (a manifest), if not input_file."""

    def digest(self) -> str:
        """Content of the point, for the cache key."""
        return json.dumps(
            [[_shape_tuple(s) for s in self.shapes], self.measured_s, self.weight, self.source,
             self.label, self.input_sha256],
            default=float,
        )


@dataclass
class FitReport:
    """The outcome of one group's fit: parameters, their status, residuals, summary errors."""

    key: GroupKey
    profile_id: str
    params: dict[str, float]
    prior: dict[str, float]
    prior_id: str
    status: dict[str, str]
    """Per parameter: "fitted", "fitted (at bound)", "fixed at prior (not identifiable)"."""
    points: list[dict[str, Any]]
    """Per point: label, source, measured_s, fitted_s, rel_error, weight."""
    mape: float
    max_abs_error: float
    num_points: int
    input_hash: str
    cached: bool = False
    stderr: dict[str, float] = field(default_factory=dict)
    """Approximate relative standard error of each free parameter (from the Jacobian)."""

    @property
    def free(self) -> list[str]:
        return [p for p in PARAMS if self.status[p].startswith("fitted")]


# --------------------------------------------------------------------------------------------
# The cost model, exactly as the simulator builds it
# --------------------------------------------------------------------------------------------


def roofline_cost(
    model: ModelSpec,
    hardware: HardwareSpec,
    fmt: WeightFormat,
    params: CostParams,
    *,
    kv_bytes_per_token: float,
    max_pass_tokens: int,
    engine: str = "llama.cpp",
) -> RooflineStepCost:
    """The RooflineStepCost a server with these cost parameters gets from sim.engines.build_cost.

    Goes through :func:`sim.engines.build_cost` with every parameter given as an override, so
    the formulas (weights read per pass, peaks by dtype) are the simulator's own.
    """
    # every parameter pinned, the batch table too ({} = none): nothing comes from a shipped profile
    spec = SerialDecodeSpec(name="fit", cost=RooflineCostSpec(
        **{**params.model_dump(), "decode_batch_scale": params.decode_batch_scale or {}}))
    cost, _ = _engines.build_cost(spec, engine, model, hardware, fmt, kv_bytes_per_token, max_pass_tokens)
    assert isinstance(cost, RooflineStepCost)
    return cost


def _max_pass_tokens(engine: str) -> int:
    return LLAMA_CPP_UBATCH if engine in ("llama.cpp", "ollama") else 1 << 30


@dataclass(frozen=True)
class _Catalog:
    model: ModelSpec
    hardware: HardwareSpec
    fmt: WeightFormat
    kv_bytes: float
    engine: str

    @classmethod
    def of(cls, key: GroupKey) -> _Catalog:
        model = get_model(key.model)
        return cls(model, get_hardware(key.hardware), get_format(key.weight_format),
                   model.kv_bytes_per_token(2.0), key.engine)

    def cost(self, params: CostParams) -> RooflineStepCost:
        return roofline_cost(
            self.model, self.hardware, self.fmt, params, kv_bytes_per_token=self.kv_bytes,
            max_pass_tokens=_max_pass_tokens(self.engine), engine=self.engine,
        )

    def digest(self) -> str:
        return json.dumps([self.model.model_dump(mode="json"), self.hardware.model_dump(mode="json"),
                           self.fmt.model_dump(mode="json"), self.kv_bytes, self.engine], sort_keys=True)


def predict(cost: RooflineStepCost, points: Sequence[Point]) -> np.ndarray:
    """Predicted seconds of every point (a sum over its passes)."""
    return np.array([sum(cost.step_time(s) for s in p.shapes) for p in points])


# --------------------------------------------------------------------------------------------
# Loading the calibration set
# --------------------------------------------------------------------------------------------


def _shape_tuple(s: BatchShape) -> tuple[Any, ...]:
    return (s.num_prefill_tokens, s.num_prefill_seqs, s.prefill_context_tokens,
            s.prefill_attention_pairs, s.num_decode_seqs, s.num_context_tokens)


def _step_point(m: StepMeasurement, input_file: str, input_sha: str) -> tuple[GroupKey, Point]:
    key = GroupKey(m.engine, m.hardware, m.model, m.weight_format, m.threads)
    prov = m.provenance
    return key, Point((m.shape,), m.step_s, float(m.num_steps), prov.source, prov.notes, input_file,
                      input_sha, prov.software, prov.date, prov.hardware)


def _latency_point(m: LatencyMeasurement, input_file: str, input_sha: str) -> tuple[GroupKey, Point]:
    key = GroupKey(m.engine, m.hardware, m.model, m.weight_format, None)
    prov = m.provenance
    label = f"{m.statistic} of a run: 1 prefill pass + {len(m.decode_shapes)} decode passes; {prov.notes}"
    return key, Point(m.shapes, m.total_s, float(m.num_samples or 1), prov.source, label, input_file,
                      input_sha, prov.software, prov.date, prov.hardware)


@dataclass
class LoadedInputs:
    """Points by group, the files read (repo-relative path -> sha256), and what was skipped."""

    groups: dict[GroupKey, list[Point]]
    files: dict[str, str]
    skipped: dict[str, int]


def load_points(paths: Iterable[str | Path] = DEFAULT_INPUTS) -> LoadedInputs:
    """Read calibration files into points grouped by (engine, hardware, model, format, threads).

    A ``manifest.yaml`` gives its listed files; ``microbenchmarks.json`` gives the published step
    rows and the vLLM CI latency totals; any other file is read by
    :func:`calibration.readers.load_measurements` (which refuses validation data).
    """
    groups: dict[GroupKey, list[Point]] = defaultdict(list)
    files: dict[str, str] = {}
    skipped: dict[str, int] = defaultdict(int)
    for raw in paths:
        path = Path(raw)
        if not path.is_absolute() and not path.exists():
            path = REPO_ROOT / path
        if not path.is_file():
            raise MeasurementError(f"{raw}: no such file; check the path")
        files[repo_relative(path)] = file_sha256(path)
        pairs: list[tuple[GroupKey, Point]] = []
        if path.resolve() == PUBLISHED_FILE.resolve() or path.name == "microbenchmarks.json":
            rel, sha = repo_relative(path), files[repo_relative(path)]
            pairs += [_step_point(m, rel, sha) for m in read_published_steps(path=path)]
            for case in PUBLISHED_LATENCY_CASES:
                pairs += [_latency_point(m, rel, sha) for m in read_published_latency(case, path=path)]
        else:
            for m in load_measurements(path):
                src = REPO_ROOT / m.provenance.source
                if m.provenance.sha256 and src.is_file():
                    files[m.provenance.source] = m.provenance.sha256
                    pairs.append(_step_point(m, m.provenance.source, m.provenance.sha256))
                else:
                    pairs.append(_step_point(m, repo_relative(path), files[repo_relative(path)]))
        for key, point in pairs:
            if point.input_file != repo_relative(path):
                point = replace(point, via=repo_relative(path))
            if key.engine in SKIPPED_ENGINES:
                skipped[key.engine] += 1
                continue
            groups[key].append(point)
    for key in list(groups):
        groups[key] = _drop_superseded(groups[key], skipped)
    return LoadedInputs(dict(sorted(groups.items())), dict(sorted(files.items())), dict(skipped))


def _drop_superseded(points: list[Point], skipped: dict[str, int]) -> list[Point]:
    """Published A/B tables (llama.cpp PR sweeps) time the same passes with the code before and
    after a change; one software version per group is fitted: the PR's, the newer code."""
    versions = {p.software for p in points}
    out = []
    for p in points:
        if p.software.startswith("llama.cpp master before PR #"):
            newer = p.software.replace("master before PR", "PR", 1)
            if newer in versions:
                skipped[f"superseded by {newer}: {p.software}"] += 1
                continue
        out.append(p)
    return out


# --------------------------------------------------------------------------------------------
# Priors
# --------------------------------------------------------------------------------------------


def _hand_profiles() -> list[CostProfile]:
    data = yaml.safe_load(HAND_PRIORS.read_text())
    entries = data if isinstance(data, list) else data.get("profiles", [data])
    return [CostProfile.model_validate(e) for e in entries]


def hand_prior(engine: str, hardware: str, model: str = "*", fmt: str = "*") -> CostProfile:
    """The hand-written prior (priors.yaml) that applies to a group, by select_profile's rule."""
    kind = get_hardware(hardware).kind if hardware not in ("*",) else "*"
    scored = [(p.specificity(engine, hardware, kind, model, fmt), i, p) for i, p in enumerate(_hand_profiles())]
    scored = [s for s in scored if s[0] >= 0]
    if not scored:
        raise ValueError(f"no hand prior in {HAND_PRIORS.name} applies to {engine} on {hardware}")
    return max(scored, key=lambda s: (s[0], s[1]))[2]


# --------------------------------------------------------------------------------------------
# The fit
# --------------------------------------------------------------------------------------------


@dataclass
class _Problem:
    """A least-squares problem in scaled units (theta) over one or more groups' points.

    A group fit has one segment; a class prior's overhead fit pools several groups, each priced
    with its own catalog entries and weighted so that every group counts the same.
    """

    segments: list[tuple[_Catalog, list[Point]]]
    weights: np.ndarray
    """Weight of each point's squared relative error: sqrt(num_steps), normalised to mean 1."""
    measured: np.ndarray
    overhead_unit: dict[str, float]
    decode_batch_scale: dict[int, float] | None = None
    """Held fixed while the five parameters are fitted (a class prior's pooled overhead fit)."""

    @classmethod
    def build(cls, groups: Sequence[tuple[GroupKey, list[Point]]]) -> _Problem:
        weights = []
        for _, points in groups:
            w = np.sqrt(np.array([p.weight for p in points], dtype=float))
            weights.append(w / w.sum() * (len(points) if len(groups) == 1 else 1.0))
        w = np.concatenate(weights)
        w = w / w.mean()
        points = [p for _, pts in groups for p in pts]
        passes = np.array([p.measured_s / len(p.shapes) for p in points])
        seqs = np.array([np.mean([s.num_decode_seqs + s.num_prefill_seqs for s in p.shapes]) for p in points])
        unit = OVERHEAD_UNIT * float(np.median(passes))
        units = {"step_overhead_s": unit, "seq_overhead_s": unit / max(float(np.median(seqs)), 1.0)}
        segments = [(_Catalog.of(key), pts) for key, pts in groups]
        return cls(segments, w, np.array([p.measured_s for p in points]), units)

    @property
    def points(self) -> list[Point]:
        return [p for _, pts in self.segments for p in pts]

    def to_theta(self, params: CostParams) -> dict[str, float]:
        return {
            name: (math.log2(getattr(params, name)) if name in EFFICIENCIES
                   else getattr(params, name) / self.overhead_unit[name])
            for name in PARAMS
        }

    def to_params(self, theta: dict[str, float]) -> CostParams:
        values = {
            name: (2.0 ** theta[name] if name in EFFICIENCIES else max(theta[name], 0.0) * self.overhead_unit[name])
            for name in PARAMS
        }
        return CostParams(**values, decode_batch_scale=self.decode_batch_scale)

    def bounds(self, name: str) -> tuple[float, float]:
        if name in EFFICIENCIES:
            return math.log2(EFFICIENCY_BOUNDS[0]), math.log2(EFFICIENCY_BOUNDS[1])
        return 0.0, math.inf

    def predicted(self, params: CostParams) -> np.ndarray:
        return np.concatenate([predict(cat.cost(params), pts) for cat, pts in self.segments])

    def relative_errors(self, params: CostParams) -> np.ndarray:
        return self.predicted(params) / self.measured - 1.0

    def jacobian(self, theta: dict[str, float], names: Sequence[str], h: float = 0.05) -> np.ndarray:
        """d(weighted relative error)/d(theta) by central differences (one-sided at a bound)."""
        sw = np.sqrt(self.weights)
        cols = []
        for name in names:
            lo, hi = self.bounds(name)
            up, down = dict(theta), dict(theta)
            up[name] = min(theta[name] + h, hi)
            down[name] = max(theta[name] - h, lo)
            span = up[name] - down[name]
            diff = self.relative_errors(self.to_params(up)) - self.relative_errors(self.to_params(down))
            cols.append(sw * diff / span)
        return np.column_stack(cols) if cols else np.zeros((len(self.measured), 0))

    def covered(self) -> set[str]:
        """Parameters the points can speak to at all (see MIN_GEMM_TOKENS)."""
        names = set(PARAMS)
        if max(s.num_tokens for p in self.points for s in p.shapes) < MIN_GEMM_TOKENS:
            names.discard("compute_efficiency")
        return names


def _identifiable(problem: _Problem, theta: dict[str, float], candidates: Sequence[str]) -> list[str]:
    """Candidates (in PRIORITY order) that one unit moves by >= IDENTIFY_RMS after compensation."""
    names = [n for n in PRIORITY if n in candidates]
    jac = problem.jacobian(theta, names)
    n = jac.shape[0]
    basis: list[np.ndarray] = []
    free = []
    for j, name in enumerate(names):
        v = jac[:, j].copy()
        for q in basis:
            v -= q * float(q @ v)
        norm = float(np.linalg.norm(v))
        if norm / math.sqrt(n) >= IDENTIFY_RMS and len(free) < n:
            free.append(name)
            basis.append(v / norm)
    return free


def _stderr_units(problem: _Problem, theta: dict[str, float], free: Sequence[str]) -> dict[str, float]:
    """Standard error of each free parameter in theta units (inf when the normal matrix is singular;
    empty when the points determine the parameters exactly, i.e. no degrees of freedom are left)."""
    dof = len(problem.measured) - len(free)
    if not free or dof <= 0:
        return {}
    jac = problem.jacobian(theta, free)
    err = np.sqrt(problem.weights) * problem.relative_errors(problem.to_params(theta))
    try:
        cov = np.linalg.inv(jac.T @ jac) * float(err @ err) / dof
    except np.linalg.LinAlgError:
        return dict.fromkeys(free, math.inf)
    return {name: math.sqrt(max(float(cov[j, j]), 0.0)) for j, name in enumerate(free)}


GRID = {
    "bandwidth_efficiency": (0.05, 0.15, 0.4, 0.8, 1.1),
    "compute_efficiency": (0.02, 0.05, 0.15, 0.4, 0.9),
    "attention_efficiency": (0.02, 0.1, 0.4),
}
"""Start values tried for the free efficiencies (overheads start at the prior and at 0): the
roofline's max() hides a parameter whose branch is not active, so a local search from the
prior alone can miss the regime the data is in."""


def _grid_starts(
    problem: _Problem, free: list[str], theta0: dict[str, float], lo: np.ndarray, hi: np.ndarray, keep: int = 3
) -> list[np.ndarray]:
    """The ``keep`` best points of a coarse grid over the free parameters (by weighted error)."""
    axes = []
    for name in free:
        if name in EFFICIENCIES:
            axes.append([math.log2(v) for v in GRID[name]])
        else:
            axes.append(sorted({theta0[name], 0.0}))
    sw = np.sqrt(problem.weights)
    scored = []
    for combo in itertools.product(*axes):
        x = np.clip(np.array(combo, dtype=float), lo, hi)
        theta = {**theta0, **dict(zip(free, (float(v) for v in x), strict=True))}
        err = sw * problem.relative_errors(problem.to_params(theta))
        scored.append((float(err @ err), tuple(x)))
    scored.sort()
    return [np.array(x) for _, x in scored[:keep]]


def _solve(
    problem: _Problem, free: Sequence[str], theta0: dict[str, float], extra_start: dict[str, float] | None = None
) -> dict[str, float]:
    """Least squares over the free parameters, the others held at theta0 (the prior)."""
    free = list(free)
    if not free:
        return dict(theta0)
    sw = np.sqrt(problem.weights)
    lo = np.array([problem.bounds(n)[0] for n in free])
    hi = np.array([problem.bounds(n)[1] for n in free])
    prior_vec = np.array([theta0[n] for n in free])

    def theta_of(x: np.ndarray) -> dict[str, float]:
        return {**theta0, **dict(zip(free, (float(v) for v in x), strict=True))}

    def residuals(x: np.ndarray) -> np.ndarray:
        err = problem.relative_errors(problem.to_params(theta_of(x)))
        return np.concatenate([sw * err, RIDGE * (x - prior_vec)])

    starts = [np.clip(prior_vec, lo, hi), *_grid_starts(problem, free, theta0, lo, hi)]
    if extra_start is not None:
        starts.append(np.clip(np.array([extra_start[n] for n in free]), lo, hi))
    best = None
    for x0 in starts:
        sol = least_squares(residuals, x0, bounds=(lo, hi), method="trf", x_scale=1.0, max_nfev=2000)
        if best is None or sol.cost < best.cost:
            best = sol
    assert best is not None
    return theta_of(best.x)


def _round(value: float) -> float:
    if abs(value) < 1e-7:  # sub-0.1-microsecond overheads are zeros the optimiser did not reach
        return 0.0
    return float(f"{value:.{SIG_DIGITS}g}")


def _weighted_rms(problem: _Problem, theta: dict[str, float]) -> float:
    err = problem.relative_errors(problem.to_params(theta))
    return float(np.sqrt(np.sum(problem.weights * err * err) / len(err)))


def _select_and_solve(
    problem: _Problem, theta0: dict[str, float], candidates: Sequence[str]
) -> tuple[dict[str, float], list[str], dict[str, str]]:
    """Fit, choosing the free parameters; returns theta, the free ones and why each other is fixed.

    1. Coverage: compute_efficiency needs a pass of MIN_GEMM_TOKENS tokens.
    2. A first fit with every candidate free (held only by the ridge) finds the regime the data
       is in (a parameter hidden behind the roofline's max at the prior can matter at the fit).
    3. Structural test there (:func:`_identifiable`), refit, repeat until stable.
    4. Backward elimination: a free parameter is fixed at the prior when doing so (and refitting
       the others) raises the weighted RMS error by less than NEEDED_RMS (absolute) or
       NEEDED_REL of it: the points do not need it.
    """
    candidates = [n for n in PRIORITY if n in candidates]
    why = {n: "no pass in the data exercises it" for n in PARAMS if n not in problem.covered()}
    candidates = [n for n in candidates if n in problem.covered()]
    theta = _solve(problem, candidates, theta0)
    free = _identifiable(problem, theta, candidates)
    seen: list[list[str]] = []
    for _ in range(5):
        seen.append(list(free))
        theta = _solve(problem, free, theta0, extra_start=theta)
        again = _identifiable(problem, theta, candidates)
        if again == free or again in seen:
            break
        free = again
    rms_all = _weighted_rms(problem, theta)
    allowed = rms_all + max(NEEDED_RMS, NEEDED_REL * rms_all)
    for name in reversed([n for n in PRIORITY if n in free]):
        trial = [n for n in free if n != name]
        theta_t = _solve(problem, trial, theta0, extra_start=theta)
        rms_t = _weighted_rms(problem, theta_t)
        if rms_t <= allowed:
            why[name] = f"the prior fits as well (weighted RMS error {rms_t:.3f} fixed vs {rms_all:.3f} free)"
            free, theta = trial, theta_t
    for name in candidates:
        if name not in free:
            why.setdefault(name, "no measurable effect on the points once the others are fitted")
    return theta, free, why


def _se_text(name: str, se_units: float, problem: _Problem) -> str:
    if name in EFFICIENCIES:
        return f"x/÷ {2.0 ** se_units:.2f}" if math.isfinite(se_units) else "unbounded"
    return f"± {se_units * problem.overhead_unit[name] * 1e3:.3g} ms" if math.isfinite(se_units) else "unbounded"


def _fit_group(
    key: GroupKey, points: list[Point], prior: CostParams, candidates: Sequence[str] = PARAMS
) -> tuple[CostParams, dict[str, str], dict[str, float]]:
    problem = _Problem.build([(key, points)])
    theta0 = problem.to_theta(prior)
    theta, free, why = _select_and_solve(problem, theta0, candidates)
    for name in PARAMS:
        if name not in candidates:
            why[name] = "per-sequence decode costs are in decode_batch_scale"
    params = problem.to_params(theta)
    params = CostParams(**{n: _round(getattr(params, n)) for n in PARAMS})
    return params, _status(problem, params, free, why), _relative_stderr(problem, params, free)


def _status(problem: _Problem, params: CostParams, free: Sequence[str], why: dict[str, str]) -> dict[str, str]:
    status = {}
    theta = problem.to_theta(params)
    for name in PARAMS:
        if name not in free:
            status[name] = f"fixed at prior ({why.get(name, 'not fitted')})"
            continue
        lo, hi = problem.bounds(name)
        at_bound = theta[name] <= lo + 1e-6 or theta[name] >= hi - 1e-6
        status[name] = "fitted (at bound)" if at_bound else "fitted"
    return status


def _relative_stderr(problem: _Problem, params: CostParams, free: Sequence[str]) -> dict[str, float]:
    """Approximate relative standard error of each free parameter (from the Jacobian)."""
    se = _stderr_units(problem, problem.to_theta(params), free)
    out = {}
    for name, sd in se.items():
        if not math.isfinite(sd):
            continue
        if name in EFFICIENCIES:
            out[name] = round(2.0**sd - 1.0, 4)
        elif getattr(params, name) > 0:
            out[name] = round(sd * problem.overhead_unit[name] / getattr(params, name), 4)
    return out


def _code_hash() -> str:
    parts = [
        FIT_VERSION,
        Path(__file__).read_text(),
        Path(_costs_module.__file__).with_name("costs.py").read_text(),  # (the source, when compiled)
        Path(__file__).with_name("fit_batching.py").read_text(),
        inspect.getsource(_engines.build_cost),
        inspect.getsource(_engines._weights_read_per_pass),  # noqa: SLF001 - the simulator's formula
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def input_hash(key: GroupKey, points: Sequence[Point], prior: CostProfile) -> str:
    """Content hash of a group's fit: measurements, catalog entries, prior and code."""
    h = hashlib.sha256()
    for part in (repr(key), _Catalog.of(key).digest(), prior.params.model_dump_json(), _code_hash(),
                 *(p.digest() for p in points)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _shape_text(shapes: tuple[BatchShape, ...]) -> str:
    if len(shapes) > 1:
        return f"{len(shapes)} passes"
    s = shapes[0]
    parts = []
    if s.num_prefill_tokens:
        parts.append(f"prefill {s.num_prefill_tokens} tok x {s.num_prefill_seqs} seq past {s.prefill_context_tokens}")
    if s.num_decode_seqs:
        parts.append(f"decode {s.num_decode_seqs} seq ctx {s.num_context_tokens}")
    return ", ".join(parts)


def _point_rows(points: Sequence[Point], fitted: np.ndarray) -> list[dict[str, Any]]:
    return [
        {
            "shape": _shape_text(p.shapes),
            "source": p.source,
            "row": p.label,
            "weight": p.weight,
            "measured_s": float(f"{p.measured_s:.6g}"),
            "fitted_s": float(f"{f:.6g}"),
            "rel_error": round(f / p.measured_s - 1.0, 4),
        }
        for p, f in zip(points, fitted, strict=True)
    ]


def fit_profile(
    measurements: Sequence[StepMeasurement | LatencyMeasurement | Point],
    *,
    engine: str,
    hardware: str,
    model: str,
    weight_format: str,
    threads: int | None = None,
    prior: CostParams | None = None,
) -> tuple[CostProfile, FitReport]:
    """Fit one group's CostParams; returns the profile (with provenance) and its report.

    ``measurements`` are the group's rows (StepMeasurement, LatencyMeasurement or Points);
    ``prior`` defaults to the hand prior of priors.yaml that applies to the group.
    """
    key = GroupKey(engine, hardware, model, weight_format, threads)
    points = []
    for m in measurements:
        if isinstance(m, Point):
            points.append(m)
        elif isinstance(m, LatencyMeasurement):
            points.append(_latency_point(m, m.provenance.source, m.provenance.sha256)[1])
        else:
            points.append(_step_point(m, m.provenance.source, m.provenance.sha256)[1])
    if not points:
        raise ValueError(f"{key}: no measurements to fit")
    hand = hand_prior(engine, hardware, model, weight_format)
    prior_profile = hand if prior is None else CostProfile(id="given-prior", params=prior)
    return _fit(key, points, prior_profile, {})


def _fit(key: GroupKey, points: list[Point], prior: CostProfile, files: dict[str, str]) -> tuple[CostProfile, FitReport]:
    batched = set(batched_decode_rows(key.engine, points))
    base = [p for i, p in enumerate(points) if i not in batched]
    candidates = [n for n in PARAMS if not (batched and base and n == "seq_overhead_s")]
    params, status, stderr = _fit_group(key, base or points, prior.params, candidates)
    if batched and base:  # second stage: one GEMM multiplier per batch size (calibration/fit_batching.py)
        catalog = _Catalog.of(key)
        rows = [points[i] for i in sorted(batched)]
        knots, detail = fit_decode_scale(catalog.cost, predict, params, rows)
        params = params.model_copy(update={"decode_batch_scale": knots})
        status["decode_batch_scale"] = (
            f"fitted per batch size on {len(rows)} pure decode rows with 2+ sequences (the five parameters "
            f"on the other {len(base)} rows): " + "; ".join(
                f"B={b}: x{d['scale']} ({d['rows']} rows, mean error {d['mean_rel_error_before']:+.1%} -> "
                f"{d['mean_rel_error_after']:+.1%})" for b, d in detail.items()))
    fitted = predict(_Catalog.of(key).cost(params), points)
    rows = _point_rows(points, fitted)
    errors = np.array([r["rel_error"] for r in rows])
    digest = input_hash(key, points, prior)
    report = FitReport(
        key=key, profile_id=key.profile_id, params=params.model_dump(exclude_none=True), prior=prior.params.model_dump(exclude_none=True),
        prior_id=prior.id, status=status, points=rows, mape=float(np.mean(np.abs(errors))),
        max_abs_error=float(np.max(np.abs(errors))), num_points=len(points), input_hash=digest, stderr=stderr,
    )
    return _profile(key, params, report, points, files), report


def _profile(key: GroupKey, params: CostParams, report: FitReport, points: Sequence[Point],
             files: dict[str, str]) -> CostProfile:
    used = sorted({p.input_file for p in points} | {p.via for p in points if p.via})
    shas = {p.input_file: p.input_sha256 for p in points}
    inputs = [{"path": f, "sha256": files.get(f) or shas.get(f, "")} for f in used]
    measured = sorted({(p.source, p.software, p.hardware, p.date) for p in points})
    provenance = {
        "method": (
            "scipy.optimize.least_squares on relative pass-time error, squared errors weighted by "
            "sqrt(num_steps); parameters not identifiable from the points fixed at the prior; "
            f"ridge {RIDGE} toward the prior on the free ones (calibration/fit.py)"
        ),
        "fit_date": datetime.now(UTC).date().isoformat(),
        "input_hash": report.input_hash,
        "inputs": inputs,
        "measurements": [
            {"source": s, "software": sw, "hardware": hw, "date": d} for s, sw, hw, d in measured
        ],
        "prior": {"id": report.prior_id, **report.prior},
        "status": report.status,
        "relative_stderr": report.stderr,
        "num_points": report.num_points,
        "mape": round(report.mape, 4),
        "max_abs_error": round(report.max_abs_error, 4),
        "residuals": report.points,
    }
    return CostProfile(
        id=key.profile_id, engine=key.engine, hardware=key.hardware, model=key.model,
        weight_format=key.weight_format, threads=key.threads, params=params, provenance=provenance,
    )


def _report_from_profile(key: GroupKey, profile: CostProfile) -> FitReport:
    prov = profile.provenance
    prior = dict(prov.get("prior", {}))
    prior_id = str(prior.pop("id", ""))
    return FitReport(
        key=key, profile_id=profile.id, params=profile.params.model_dump(exclude_none=True), prior=prior, prior_id=prior_id,
        status=dict(prov.get("status", {})), points=list(prov.get("residuals", [])),
        mape=float(prov.get("mape", math.nan)), max_abs_error=float(prov.get("max_abs_error", math.nan)),
        num_points=int(prov.get("num_points", 0)), input_hash=str(prov.get("input_hash", "")), cached=True,
        stderr=dict(prov.get("relative_stderr", {})),
    )


# --------------------------------------------------------------------------------------------
# Class priors
# --------------------------------------------------------------------------------------------


def class_priors(reports: Sequence[FitReport], groups: dict[GroupKey, list[Point]]) -> list[CostProfile]:
    """Per (engine, hardware kind) with fitted groups, one prior profile; and one per
    (engine, hardware kind, weight format), which is more specific (formats differ in what their
    GEMMs run on: int8 MMQ for GGUF quants, fp16 tensor cores for F16).

    * efficiencies: the median over the class's groups that fitted it (the hand prior where
      none did);
    * overheads: fitted on all the class's points pooled (every group weighted the same), with
      the efficiencies fixed at those medians, so that the overheads agree with them (fixed at
      the hand prior where the pooled points cannot identify them).

    Ollama's class priors copy llama.cpp's (Ollama runs llama.cpp's kernels) and say so.
    """
    by_class: dict[tuple[str, str, str], list[FitReport]] = defaultdict(list)
    for r in reports:
        kind = get_hardware(r.key.hardware).kind
        by_class[(r.key.engine, kind, "*")].append(r)
        by_class[(r.key.engine, kind, r.key.weight_format)].append(r)
    out = []
    for (engine, kind, fmt), members in sorted(by_class.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] != "*", kv[0][2])):
        hand = _class_hand_prior(engine, kind)
        values = hand.params.model_dump()
        per_param: dict[str, Any] = {}
        for name in EFFICIENCIES:
            fitted = [(r.profile_id, r.params[name]) for r in members if r.status.get(name, "").startswith("fitted")]
            if fitted:
                vals = [v for _, v in fitted]
                values[name] = _round(float(np.median(vals)))
                per_param[name] = {"median_of": [g for g, _ in fitted], "min": min(vals), "max": max(vals)}
            else:
                per_param[name] = {"hand_prior": hand.id, "reason": "fitted in no group of the class"}
        tables = [(r.profile_id, r.params["decode_batch_scale"]) for r in members if r.params.get("decode_batch_scale")]
        if len(tables) >= 2:  # per batch size, the median multiplier over the groups that measured it
            # (one group alone, e.g. the 2023 V100 build, does not stand for its class)
            knots = sorted({int(b) for _, t in tables for b in t})
            values["decode_batch_scale"] = {
                b: _round(float(np.median([float(t[b]) for _, t in tables if b in t]))) for b in knots}
            per_param["decode_batch_scale"] = {"median_of": [g for g, _ in tables]}
        problem = _Problem.build([(r.key, groups[r.key]) for r in members])
        problem.decode_batch_scale = values.get("decode_batch_scale")
        theta0 = problem.to_theta(CostParams(**values))
        theta, free, why = _select_and_solve(problem, theta0, ("step_overhead_s", "seq_overhead_s"))
        params = problem.to_params(theta)
        params = CostParams(**{n: _round(getattr(params, n)) if n in free else values[n] for n in PARAMS},
                            decode_batch_scale=values.get("decode_batch_scale"))
        for name in ("step_overhead_s", "seq_overhead_s"):
            per_param[name] = (
                {"fitted_on": "all points of the class pooled, efficiencies fixed at the medians"} if name in free
                else {"hand_prior": hand.id, "reason": why.get(name, "not identifiable")}
            )
        errors = problem.relative_errors(params)
        digest = hashlib.sha256("".join(sorted(r.input_hash for r in members)).encode()).hexdigest()
        provenance = {
            "method": "efficiencies: median over the fitted groups that identified them; overheads: fitted "
                      "on the pooled points of the class with those efficiencies (calibration/fit.py)",
            "fit_date": datetime.now(UTC).date().isoformat(),
            "input_hash": digest,
            "groups": sorted(r.profile_id for r in members),
            "params": per_param,
            "num_points": len(errors),
            "mape_on_class_points": round(float(np.mean(np.abs(errors))), 4),
            "max_abs_error_on_class_points": round(float(np.max(np.abs(errors))), 4),
            "replaces": hand.id,
        }
        suffix = f"{kind}-{fmt}" if fmt != "*" else kind
        out.append(CostProfile(id=f"fitted-prior-{engine}-{suffix}", engine=engine, hardware=kind,
                               weight_format=fmt, params=params, provenance=provenance))
        if engine == "llama.cpp" and OLLAMA_COPIES:
            copy = {**provenance, "method": f"copy of fitted-prior-llama.cpp-{suffix}: Ollama runs llama.cpp's "
                    "kernels (ENGINES.md A.1); Ollama's own per-request overheads are not in it",
                    "replaces": _class_hand_prior("ollama", kind).id}
            out.append(CostProfile(id=f"fitted-prior-ollama-{suffix}", engine="ollama", hardware=kind,
                                   weight_format=fmt, params=params, provenance=copy))
    return out


def _class_hand_prior(engine: str, kind: str) -> CostProfile:
    scored = [(p.specificity(engine, "", kind, "*", "*"), i, p) for i, p in enumerate(_hand_profiles())]
    scored = [s for s in scored if s[0] >= 0]
    return max(scored, key=lambda s: (s[0], s[1]))[2]


# --------------------------------------------------------------------------------------------
# All groups, with the cache
# --------------------------------------------------------------------------------------------


def _dump(profiles: Sequence[CostProfile]) -> str:
    docs = [p.model_dump(mode="json", exclude_none=True) for p in profiles]
    header = (
        "# Generated by `servesim calibrate` (calibration/fit.py); do not edit by hand.\n"
        "# Provenance: inputs with sha256, fit date, residuals per point. Refit: servesim calibrate --force\n"
    )
    body = yaml.safe_dump(docs[0] if len(docs) == 1 else {"profiles": docs}, sort_keys=False, width=120,
                          allow_unicode=True)
    return header + body


def _read_existing(path: Path) -> dict[str, CostProfile]:
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
        entries = data if isinstance(data, list) else data.get("profiles", [data])
        return {p.id: p for p in (CostProfile.model_validate(e) for e in entries)}
    except Exception:  # noqa: BLE001 - an unreadable old profile is simply refitted
        return {}


@dataclass
class FitRun:
    """Everything one ``calibrate`` run did."""

    reports: list[FitReport]
    priors: list[CostProfile]
    written: list[Path]
    skipped: dict[str, int]
    files: dict[str, str]


def fit_all(
    paths: Iterable[str | Path] = DEFAULT_INPUTS,
    *,
    out: str | Path = PROFILES_DIR,
    force: bool = False,
    with_priors: bool = True,
) -> FitRun:
    """Fit every group found in ``paths`` and write the profiles.

    ``out`` is a folder (one ``fitted-*.yaml`` per group plus ``fitted-priors.yaml``) or a
    ``.yaml`` file (all profiles in one ``{profiles: [...]}``). A group whose ``input_hash``
    equals the existing profile's is not refitted unless ``force``.
    """
    loaded = load_points(paths)
    out = Path(out)
    single = out.suffix in (".yaml", ".yml")
    existing: dict[str, CostProfile] = {}
    if single:
        existing = _read_existing(out)
    elif out.is_dir():
        for f in sorted(out.glob("fitted-*.yaml")):
            existing.update(_read_existing(f))
    profiles, reports = [], []
    for key, points in loaded.groups.items():
        prior = hand_prior(key.engine, key.hardware, key.model, key.weight_format)
        digest = input_hash(key, points, prior)
        old = existing.get(key.profile_id)
        if not force and old is not None and old.provenance.get("input_hash") == digest:
            profiles.append(old)
            reports.append(_report_from_profile(key, old))
            continue
        profile, report = _fit(key, points, prior, loaded.files)
        profiles.append(profile)
        reports.append(report)
    priors = class_priors(reports, loaded.groups) if with_priors else []
    for p in priors:  # keep the old file's fit date when nothing changed
        old = existing.get(p.id)
        if not force and old is not None and old.provenance.get("input_hash") == p.provenance["input_hash"]:
            priors[priors.index(p)] = old
    written = []
    if single:
        text = _dump([q for p in profiles for q in (p, *_ollama_copy(p))] + priors)
        if not out.is_file() or out.read_text() != text:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
            written.append(out)
    else:
        out.mkdir(parents=True, exist_ok=True)
        targets = [(out / f"{p.id}.yaml", [p, *_ollama_copy(p)]) for p in profiles]
        if priors:
            targets.append((out / PRIORS_FILE, priors))
        for path, content in targets:
            text = _dump(content)
            if not path.is_file() or path.read_text() != text:
                path.write_text(text)
                written.append(path)
    _clear_profile_cache()
    return FitRun(reports, [*priors], written, loaded.skipped, loaded.files)


def _ollama_copy(profile: CostProfile) -> list[CostProfile]:
    """Ollama runs llama.cpp's kernels (ENGINES.md A.1): a llama.cpp fit also prices Ollama's
    passes on the same hardware, model and format (written next to it, marked as a copy)."""
    if profile.engine != "llama.cpp" or not OLLAMA_COPIES:
        return []
    provenance = {
        "copy_of": profile.id,
        "reason": "Ollama runs llama.cpp's kernels (ENGINES.md A.1); its own per-request work "
                  "(HTTP, Go scheduler) is not in these numbers",
        "input_hash": profile.provenance.get("input_hash", ""),
        "fit_date": profile.provenance.get("fit_date", ""),
    }
    return [profile.model_copy(update={"id": profile.id + "-as-ollama", "engine": "ollama", "provenance": provenance})]


def _clear_profile_cache() -> None:
    from sim.profiles import load_profiles

    load_profiles.cache_clear()
