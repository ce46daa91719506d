"""vLLM: the offline step micro-benchmark and ``vllm bench latency``."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from calibration.measurements import (
    _DTYPES,
    LatencyMeasurement,
    MeasurementError,
    Provenance,
    StepMeasurement,
    _checked_threads,
    _field,
    _int,
    _iter_jsonl,
    _prefill_pairs,
    _round_half_up,
    _Rows,
    _split_by_tokens,
    file_provenance,
)
from sim.shapes import BatchShape

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


