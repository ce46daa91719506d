"""Measurements turned into points (group, shapes, measured seconds) and predicted by the
very cost model the simulator builds."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from calibration.fit.settings import (
    DEFAULT_INPUTS,
    LLAMA_CPP_UBATCH,
    PARAMS,
    PUBLISHED_LATENCY_CASES,
    SKIPPED_ENGINES,
)
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
from sim import engines as _engines
from sim.catalog import HardwareSpec, ModelSpec, WeightFormat, get_format, get_hardware, get_model
from sim.costs import RooflineStepCost
from sim.profiles import CostParams
from sim.scenario import RooflineCostSpec, SerialDecodeSpec
from sim.shapes import BatchShape

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


