"""llama.cpp's benchmarks: ``llama-bench`` (JSON/JSONL) and ``llama-batched-bench`` (JSONL)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from calibration.measurements import (
    MeasurementError,
    StepMeasurement,
    _checked_threads,
    _field,
    _int,
    _iter_csv,
    _iter_jsonl,
    _optional,
    _prefill_pairs,
    _round_half_up,
    _Rows,
    _split_by_tokens,
    file_provenance,
    file_sha256,
    repo_relative,
)
from sim.shapes import BatchShape

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


