"""Readers of calibration inputs, one module per input format, behind one registry.

:data:`READERS` maps a format name to its reader; :func:`load_measurements` reads files (the format
sniffed from their content, or named), :func:`load_manifest` reads a manifest listing files with
their formats and options. Validation data is refused (see :mod:`calibration.measurements`).
Adding a format is adding one module here and one entry in :data:`READERS`.
"""

from __future__ import annotations

import csv
import inspect
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from calibration.measurements import (
    DATA_DIR,
    REPO_ROOT,
    MeasurementError,
    StepMeasurement,
    _is_validation,
)
from calibration.readers.llama_cpp import read_batched_bench, read_llama_bench
from calibration.readers.published import (
    PUBLISHED_SKIPPED,
    read_published_latency,
    read_published_steps,
)
from calibration.readers.server_summary import read_server_summary
from calibration.readers.step_csv import STEP_CSV_COLUMNS, read_step_csv
from calibration.readers.vidur import read_vidur_attention, read_vidur_mlp
from calibration.readers.vllm import read_vllm_bench_latency, read_vllm_step_bench

__all__ = [
    "PUBLISHED_SKIPPED",
    "READERS",
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
