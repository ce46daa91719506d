"""A plain step CSV (``prefill_tokens,decode_seqs,context_tokens,step_s``) with a YAML sidecar of metadata."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import yaml

from calibration.measurements import (
    Engine,
    MeasurementError,
    StepMeasurement,
    _field,
    _int,
    _iter_csv,
    _optional,
    _Rows,
    file_provenance,
)
from sim.shapes import BatchShape

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


