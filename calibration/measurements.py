"""Measured step times, read from the formats people already produce, with provenance.

This module defines what a measurement is and the helpers the readers share; the readers
themselves (one module per input format) and the loading entry points are in
:mod:`calibration.readers`. Every reader turns raw benchmark output into :class:`StepMeasurement` rows: the
:class:`~sim.shapes.BatchShape` of one forward pass, the seconds that pass took, and where the
number came from. Request-level numbers that cannot be split into passes are kept as
:class:`LatencyMeasurement` (a sum of known pass shapes) or :class:`ServerSummaryRow`.

Conventions shared by all readers:

* ``num_context_tokens`` of a decode pass is the number of tokens already in the KV cache of each
  decoding sequence (summed), i.e. the position of the token being fed: decode step ``i`` (0-based)
  after a prompt of ``P`` tokens has context ``P + i``.
* A prompt chunk of ``n`` tokens on top of ``past`` cached tokens adds ``past`` to
  ``prefill_context_tokens`` and ``n * (past + (n + 1) / 2)`` to ``prefill_attention_pairs``.
* Averaged rows (``num_steps > 1``) carry the mean context, rounded half up.

Validation data (the paths of :data:`VALIDATION_PATHS` under ``calibration/data/``) must never be
fitted on:
:func:`load_measurements` refuses it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from sim.shapes import BatchShape

__all__ = [
    "DATA_DIR",
    "LatencyMeasurement",
    "MeasurementError",
    "Provenance",
    "ServerSummaryRow",
    "StepMeasurement",
    "file_provenance",
]

Engine = Literal["llama.cpp", "vllm", "ollama", "vidur-sarathi"]

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(__file__).resolve().parent / "data"
PUBLISHED_FILE = DATA_DIR / "published" / "microbenchmarks.json"
# Paths (relative to DATA_DIR) holding validation data: never fitted on.
VALIDATION_PATHS = (
    "published/validation_visible.json",
    "this_machine/llama_cpp_python_server/",
    "sandbox_zen4/llama_server_load/",
    "sandbox_zen4/vllm_server_load/",
    "sandbox_zen4/vllm_server_load_2/",
    "sandbox_zen4/llama_server_load_b/",
    "sandbox_zen4/vllm_server_load_b/",
    "sandbox_zen4/vllm_server_load_c/",
    "sandbox_zen4/vllm_server_load_b_cachehits/",
    "sandbox_zen4/vllm_server_load_3/",
)


class MeasurementError(ValueError):
    """A measurement file cannot be read; the message names the file, the line and the fix."""


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a measured number comes from."""

    source: str
    """File path relative to the repo root, or a URL for published numbers."""
    sha256: str
    """Of the file read; "" for numbers quoted inline from a publication."""
    hardware: str
    """Catalog id, e.g. "epyc-zen5-2c-vm", "rtx-4090", "a100-80gb-pcie", "h100-sxm"."""
    software: str
    """Engine and version, e.g. "llama.cpp 0c1e570 (llama-cpp-python 0.3.36)"."""
    date: str
    """ISO date (or year-month) of the measurement; "" when unknown."""
    notes: str = ""


@dataclass(frozen=True, slots=True)
class StepMeasurement:
    """Measured seconds of one forward pass of a known shape."""

    shape: BatchShape
    step_s: float
    """Seconds of ONE forward pass of this shape (mean over `num_steps` passes)."""
    num_steps: int
    """Passes averaged into `step_s` (a weight for fitting)."""
    model: str
    """Catalog model id (``sim/catalog/models.yaml``), e.g. "llama-3.1-8b", "smollm2-135m"."""
    hardware: str
    """Catalog hardware id (``sim/catalog/hardware.yaml``)."""
    engine: Engine
    weight_format: str
    """Catalog format name (``sim/catalog/formats.yaml``): "f16" (GGUF), "fp16", "bf16", "q8_0"."""
    threads: int | None
    """CPU compute threads where the engine says; None on GPUs or when unknown."""
    provenance: Provenance

    def __post_init__(self) -> None:
        if not (math.isfinite(self.step_s) and self.step_s > 0):
            raise ValueError(f"step_s must be a positive number of seconds, got {self.step_s!r}")
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")
        if self.engine not in get_args(Engine):
            raise ValueError(f"engine must be one of {get_args(Engine)}, got {self.engine!r}")


@dataclass(frozen=True, slots=True)
class LatencyMeasurement:
    """A request-level time known only as a total: the sum of the costs of the listed passes."""

    total_s: float
    """Measured seconds of the whole run (`statistic` over `num_samples` runs)."""
    prefill_shape: BatchShape
    decode_shapes: tuple[BatchShape, ...]
    """One shape per decode pass, in order."""
    model: str
    hardware: str
    engine: Engine
    weight_format: str
    provenance: Provenance
    num_samples: int | None = None
    statistic: str = "mean"

    @property
    def shapes(self) -> tuple[BatchShape, ...]:
        """Every pass of the run: the prefill pass, then the decode passes."""
        return (self.prefill_shape, *self.decode_shapes)


@dataclass(frozen=True, slots=True)
class ServerSummaryRow:
    """One row of a closed-loop server benchmark summary (`summary.csv` columns)."""

    tag: str
    api: str
    concurrency: int
    prompt_tokens: int
    max_tokens: int
    requests_total: int
    requests_ok: int
    timeouts: int
    errors: int
    retries: int
    window_s: float
    requests_in_window: int
    latency_samples: int
    throughput_tok_s: float
    throughput_req_s: float
    e2e_p50_s: float
    e2e_p90_s: float
    e2e_p99_s: float
    e2e_max_s: float
    ttft_p50_s: float
    ttft_p99_s: float
    tpot_p50_ms: float
    tpot_p99_ms: float
    mean_out_tokens: float
    wall_s: float
    cpu_busy_cores: float
    cpu_server_cores: float
    cpu_loadgen_cores: float
    cpu_foreign_cores: float
    loadavg_end: float
    throughput_window_tok_s: float
    e2e_mean_s: float
    little_C_est: float  # noqa: N815 - the column name
    provenance: Provenance
    role: Literal["calibration", "validation"]


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def repo_relative(path: Path) -> str:
    """Repo-relative POSIX path when under the repo, else the absolute path."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return resolved.as_posix()


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_fitted(path: Path, profiles: list[dict[str, Any]], module: str) -> list[dict[str, Any]]:
    """Write fitted ``profiles`` as ``{profiles: [...]}`` YAML under a do-not-edit header naming
    ``module`` (e.g. ``calibration.fit_noise``), the one command that rewrites the file."""
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# Written by `python -m {module}` ({module.replace('.', '/')}.py); do not edit.\n"
    path.write_text(header + yaml.safe_dump({"profiles": profiles}, sort_keys=False, width=110))
    return profiles


def file_provenance(
    path: str | Path, *, hardware: str, software: str, date: str = "", notes: str = ""
) -> Provenance:
    """Provenance of a measurement file: repo-relative path and the sha256 of its bytes."""
    p = Path(path)
    if not p.is_file():
        raise MeasurementError(f"{p}: no such file; check the path")
    return Provenance(repo_relative(p), file_sha256(p), hardware, software, date, notes)


def _round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def _prefill_pairs(chunk: int, past: int) -> float:
    return chunk * (past + (chunk + 1) / 2)


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _is_validation(path: Path) -> bool:
    try:
        rel = path.resolve().relative_to(DATA_DIR).as_posix()
    except ValueError:
        return False
    return any(rel == v or (v.endswith("/") and rel.startswith(v)) for v in VALIDATION_PATHS)


def _field(row: Mapping[str, Any], key: str, where: str, cast: Callable[[Any], Any]) -> Any:
    if key not in row or row[key] in ("", None):
        raise MeasurementError(f"{where}: missing value for '{key}'; add the field or column")
    try:
        return cast(row[key])
    except (TypeError, ValueError) as err:
        raise MeasurementError(f"{where}: bad value {row[key]!r} for '{key}': {err}") from err


def _optional(row: Mapping[str, Any], key: str, where: str, default: int) -> int:
    """An optional integer field (older tool versions lack it)."""
    return default if row.get(key) in (None, "") else int(_field(row, key, where, _int))


def _int(value: Any) -> int:
    number = float(value)
    if not number.is_integer():
        raise ValueError("expected an integer")
    return int(number)


def _iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of a JSONL file."""
    with path.open() as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise MeasurementError(
                    f"{path}:{lineno}: not valid JSON ({err.msg}); "
                    "each line must hold one JSON object"
                ) from err
            if not isinstance(obj, dict):
                raise MeasurementError(f"{path}:{lineno}: expected a JSON object, got {obj!r:.40}")
            yield lineno, obj


def _iter_csv(path: Path, required: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) for every row of a CSV file whose header has the `required` columns."""
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise MeasurementError(
                f"{path}:1: missing column(s) {', '.join(missing)} in the header; "
                f"the format needs {', '.join(required)}"
            )
        for row in reader:
            yield reader.line_num, row


def _split_by_tokens(shapes: Sequence[BatchShape], total_s: float) -> list[float]:
    """Share `total_s` between passes in proportion to the tokens each pass computes."""
    tokens = sum(s.num_tokens for s in shapes)
    return [total_s * s.num_tokens / tokens for s in shapes]


_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}  # catalog format names


@dataclass(frozen=True, slots=True)
class _Rows:
    """Builds the StepMeasurement rows of one measured run (shared model, engine, provenance)."""

    model: str
    hardware: str
    engine: Engine
    weight_format: str
    threads: int | None
    source: str
    sha256: str
    software: str
    date: str
    prefix: str = ""
    """Notes put before each row's own note (which run it comes from)."""
    suffix: str = ""
    """Notes put after each row's own note (caller's notes)."""

    def __call__(
        self, shape: BatchShape, step_s: float, num_steps: int, note: str
    ) -> StepMeasurement:
        notes = _join(self.prefix, note, self.suffix)
        prov = Provenance(self.source, self.sha256, self.hardware, self.software, self.date, notes)
        return StepMeasurement(
            shape,
            step_s,
            num_steps,
            self.model,
            self.hardware,
            self.engine,
            self.weight_format,
            self.threads,
            prov,
        )


def _checked_threads(found: int | None, expected: int | None, where: str) -> int | None:
    if expected is not None and found is not None and expected != found:
        raise MeasurementError(
            f"{where}: the file says {found} threads but {expected} were expected; fix the manifest"
        )
    return found if found is not None else expected

