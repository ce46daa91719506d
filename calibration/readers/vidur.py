"""Vidur profiles: per-layer operator medians (MLP and attention CSVs, milliseconds)."""

from __future__ import annotations

import csv
from pathlib import Path

from calibration.measurements import (
    MeasurementError,
    StepMeasurement,
    _field,
    _int,
    _iter_csv,
    _join,
    _prefill_pairs,
    file_provenance,
)
from sim.shapes import BatchShape

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


