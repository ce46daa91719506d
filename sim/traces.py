"""Readers for public LLM request traces and request-length tables.

A trace is a sequence of requests, each with an arrival time, a prompt length and an
output length (in tokens). This module reads the public formats into columns of numpy
arrays (:class:`Trace`), and the per-request length tables that have no arrival times
(:class:`LengthTable`). Supported formats (``TraceFormat``):

* ``azure2023``: Azure LLM inference trace 2023 (Splitwise, ISCA'24), CSV
  ``TIMESTAMP,ContextTokens,GeneratedTokens`` with naive timestamps carrying 7
  fractional digits (``2023-11-16 18:17:03.9799600``). The files have no trailing
  newline.
* ``azure2024``: the week-long Azure trace 2024 (DynamoLLM), same columns, UTC
  timestamps that may carry an offset (``+00:00``) and any number of fractional digits.
* ``mooncake``: Mooncake FAST'25 JSON lines ``{"timestamp": ms, "input_length",
  "output_length", "hash_ids": [...]}``; hash ids name 512-token prefix blocks.
* ``vidur``: Vidur's processed traces, CSV ``arrived_at,num_prefill_tokens,num_decode_tokens``
  (seconds as floats).
* ``burstgpt``: BurstGPT CSV ``Timestamp,Model,Request tokens,Response tokens,Total tokens,
  Log Type`` (integer seconds from the trace start; ``Response tokens`` = 0 marks a failed
  request).
* ``vllm_bench``: the JSON written by ``vllm bench serve --save-result --save-detailed``
  (per-request ``input_lens``/``output_lens``/``errors``; no arrival times).

Rows that cannot be simulated (zero prompt or zero output tokens, failed requests) are
dropped and counted in ``Trace.metadata["dropped_rows"]``. Every malformed input raises
:class:`TraceError` with a message ``"{path}:{line}: {what} — {fix}"`` (lines are 1-based,
the header is line 1).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, get_args

import numpy as np

__all__ = [
    "TRACE_FORMATS",
    "LengthTable",
    "Trace",
    "TraceError",
    "TraceFormat",
    "detect_format",
    "read_length_table",
    "read_trace",
]

TraceFormat = Literal["azure2023", "azure2024", "mooncake", "vidur", "burstgpt", "vllm_bench"]
TRACE_FORMATS: tuple[str, ...] = get_args(TraceFormat)

MOONCAKE_BLOCK_TOKENS = 512
"""Tokens per prefix block named by one Mooncake hash id."""
TIME_TOLERANCE_S = 1e-3
"""A timestamp may go backwards by at most this much (clock jitter); more is an error."""

_AZURE_COLS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_VIDUR_COLS = ("arrived_at", "num_prefill_tokens", "num_decode_tokens")
_BURSTGPT_COLS = ("Timestamp", "Model", "Request tokens", "Response tokens")
_BURSTGPT_HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"
_LENGTH_COLS = ("num_prefill_tokens", "num_decode_tokens")
_MOONCAKE_KEYS = ("timestamp", "input_length", "output_length", "hash_ids")
_VLLM_KEYS = ("input_lens", "output_lens", "errors")
_VLLM_META = ("date", "backend", "model_id", "num_prompts", "request_rate", "burstiness",
              "max_concurrency", "duration", "completed")

_FORMAT_HELP: dict[str, str] = {
    "azure2023": "CSV `TIMESTAMP,ContextTokens,GeneratedTokens` (Azure LLM trace 2023)",
    "azure2024": "CSV `TIMESTAMP,ContextTokens,GeneratedTokens`, UTC times (Azure 2024)",
    "mooncake": 'JSON lines `{"timestamp", "input_length", "output_length", "hash_ids"}`',
    "vidur": "CSV `arrived_at,num_prefill_tokens,num_decode_tokens`",
    "burstgpt": f"CSV `{_BURSTGPT_HEADER}`",
    "vllm_bench": "JSON of `vllm bench serve --save-result --save-detailed`",
}

_INT_RE = re.compile(r"\s*([+-]?\d+)(?:\.0*)?\s*")
_TS_RE = re.compile(
    r"\s*(\d{4}-\d{2}-\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?\s*"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?\s*"
)
_OFFSET_RE = re.compile(r"([+-])(\d{2}):?(\d{2})?")


class TraceError(ValueError):
    """A trace file could not be read.

    The message names the file, the line (1-based, header = line 1) and the fix.
    """


def _err(path: str | Path, line: int, what: str, fix: str) -> TraceError:
    """Builds a TraceError with the standard ``path:line: what — fix`` message."""
    return TraceError(f"{path}:{int(line)}: {what} — {fix}")


def _formats_help() -> str:
    """Lists the known formats and what their files look like, for error messages."""
    items = [f"{name}: {text}" for name, text in _FORMAT_HELP.items()]
    items.append("length table (read_length_table only): CSV `num_prefill_tokens,"
                 "num_decode_tokens,...`")
    return "; ".join(items)


# --------------------------------------------------------------------------- data types


@dataclass(frozen=True, eq=False)
class Trace:
    """Requests of a trace, as columns.

    Attributes:
        path: The file the trace was read from.
        format: One of ``TRACE_FORMATS``.
        arrival_s: float64 seconds from the first request (first = 0.0), non-decreasing;
            None when the file has no arrival times (``vllm_bench``).
        prompt_tokens: int64 prompt lengths, >= 1.
        output_tokens: int64 output lengths, >= 1.
        hash_ids: Mooncake only: per request, the int64 ids of its prefix blocks (equal ids
            = shareable KV-cache blocks).
        hash_block_tokens: Tokens per hash block (512 for Mooncake).
        metadata: Extra facts: ``dropped_rows`` (always), and per format e.g.
            ``failed_rows``, ``models``, ``request_rate``, ``start_time``, ``transforms``.
    """

    path: str
    format: str
    arrival_s: np.ndarray | None
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    hash_ids: tuple[np.ndarray, ...] | None = None
    hash_block_tokens: int | None = None
    metadata: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Checks that all columns describe the same requests."""
        n = len(self.prompt_tokens)
        sizes = [len(self.output_tokens)]
        if self.arrival_s is not None:
            sizes.append(len(self.arrival_s))
        if self.hash_ids is not None:
            sizes.append(len(self.hash_ids))
            if self.hash_block_tokens is None:
                raise ValueError("hash_ids need hash_block_tokens")
        if any(size != n for size in sizes):
            raise ValueError(f"columns of different lengths: {n} prompts vs {sizes}")

    def __len__(self) -> int:
        """Number of requests."""
        return len(self.prompt_tokens)

    @property
    def duration_s(self) -> float:
        """Seconds from the first to the last arrival.

        Raises:
            ValueError: The trace has no arrival times.
        """
        if self.arrival_s is None:
            raise ValueError(f"{self.path}: a {self.format} trace has no arrival times "
                             "(see metadata['request_rate'] / ['duration'])")
        return float(self.arrival_s[-1] - self.arrival_s[0]) if len(self) else 0.0

    @property
    def mean_rate_per_s(self) -> float:
        """Requests per second over the trace's span (``len / duration_s``; inf if 0 s)."""
        duration = self.duration_s
        return len(self) / duration if duration > 0 else math.inf

    def transform(
        self,
        *,
        speedup: float = 1.0,
        window_s: tuple[float, float] | None = None,
        length_scale: float = 1.0,
        max_context_tokens: int | None = None,
        limit: int | None = None,
    ) -> Trace:
        """Returns a modified copy of the trace; steps apply in the order of the arguments.

        Args:
            speedup: Divides inter-arrival times (2.0 = twice the rate).
            window_s: Keeps the requests arriving in ``[start, end)`` of this trace's own
                times (before speedup) and re-bases times so the first kept one is 0.
            length_scale: Multiplies prompt and output lengths (rounded, >= 1).
            max_context_tokens: Clips each request so prompt + output <= this: the prompt
                is cut first (down to 1 token, as a server truncates the prompt to leave
                room for the requested output), then the output.
            limit: Keeps the first N requests.

        Returns:
            A new Trace; hash ids follow their rows and are cut to
            ``ceil(prompt / hash_block_tokens)`` ids when prompts get shorter.

        Raises:
            ValueError: A bad argument, a time-based step on a trace without times, or a
                window that keeps no request.
        """
        _check_transform_args(self, speedup, window_s, length_scale, max_context_tokens, limit)
        return _apply_transform(self, speedup, window_s, length_scale, max_context_tokens, limit)


@dataclass(frozen=True, eq=False)
class LengthTable:
    """Rows of (prompt, output) lengths, kept together so sampling keeps their correlation.

    Attributes:
        path: The file the table was read from.
        prompt_tokens: int64 prompt lengths, >= 1.
        output_tokens: int64 output lengths, >= 1 (same row order).
    """

    path: str
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray

    def __len__(self) -> int:
        """Number of rows."""
        return len(self.prompt_tokens)


# --------------------------------------------------------------------------- transform


def _check_transform_args(
    trace: Trace,
    speedup: float,
    window_s: tuple[float, float] | None,
    length_scale: float,
    max_context_tokens: int | None,
    limit: int | None,
) -> None:
    """Raises ValueError for transform() arguments that make no sense."""
    if not (math.isfinite(speedup) and speedup > 0):
        raise ValueError(f"speedup must be a finite number > 0, got {speedup}")
    if not (math.isfinite(length_scale) and length_scale > 0):
        raise ValueError(f"length_scale must be a finite number > 0, got {length_scale}")
    if max_context_tokens is not None and max_context_tokens < 2:
        raise ValueError(f"max_context_tokens must be >= 2, got {max_context_tokens}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if window_s is not None and not window_s[0] < window_s[1]:
        raise ValueError(f"window_s must be (start, end) with start < end, got {window_s}")
    if trace.arrival_s is None and (window_s is not None or speedup != 1.0):
        raise ValueError(f"{trace.path}: a {trace.format} trace has no arrival times, "
                         "so speedup and window_s do not apply")


def _apply_transform(
    trace: Trace,
    speedup: float,
    window_s: tuple[float, float] | None,
    length_scale: float,
    max_context_tokens: int | None,
    limit: int | None,
) -> Trace:
    """Applies the steps of Trace.transform() in order and records them in metadata."""
    out = _window(trace, window_s) if window_s is not None else trace
    if speedup != 1.0 and out.arrival_s is not None:
        out = replace(out, arrival_s=out.arrival_s / speedup)
    out = _scale_lengths(out, length_scale) if length_scale != 1.0 else out
    if max_context_tokens is not None:
        out = _clip_context(out, max_context_tokens)
    if limit is not None:
        out = _take(out, np.arange(min(limit, len(out))))
    step = {"speedup": speedup, "window_s": window_s, "length_scale": length_scale,
            "max_context_tokens": max_context_tokens, "limit": limit}
    done: tuple[object, ...] = tuple(trace.metadata.get("transforms", ()))  # type: ignore[arg-type]
    return replace(out, metadata={**out.metadata, "transforms": (*done, step)})


def _take(trace: Trace, rows: np.ndarray) -> Trace:
    """Keeps the given rows (an index array or boolean mask), re-basing times to 0."""
    arrival = None
    if trace.arrival_s is not None:
        arrival = trace.arrival_s[rows]
        if len(arrival):
            arrival = arrival - arrival[0]
    hash_ids = None
    if trace.hash_ids is not None:
        index = np.flatnonzero(rows) if rows.dtype == bool else rows
        hash_ids = tuple(trace.hash_ids[i] for i in index)
    return replace(trace, arrival_s=arrival, prompt_tokens=trace.prompt_tokens[rows],
                   output_tokens=trace.output_tokens[rows], hash_ids=hash_ids)


def _window(trace: Trace, window_s: tuple[float, float]) -> Trace:
    """Keeps the arrivals in ``[start, end)`` and re-bases them to 0."""
    assert trace.arrival_s is not None
    start, end = window_s
    keep = (trace.arrival_s >= start) & (trace.arrival_s < end)
    if not keep.any():
        raise ValueError(f"{trace.path}: no request arrives in window_s={window_s} "
                         f"(the trace spans 0 to {trace.duration_s:.3f} s)")
    return _take(trace, keep)


def _trim_hash_ids(trace: Trace, prompt: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """Cuts each hash list to the ``ceil(prompt / block)`` ids that still cover the prompt."""
    if trace.hash_ids is None or trace.hash_block_tokens is None:
        return trace.hash_ids
    needed = -(-prompt // trace.hash_block_tokens)
    return tuple(ids[:n] if len(ids) > n else ids
                 for ids, n in zip(trace.hash_ids, needed.tolist()))


def _scale_lengths(trace: Trace, scale: float) -> Trace:
    """Multiplies prompt and output lengths by ``scale`` (rounded, at least 1)."""
    prompt = np.maximum(1, np.rint(trace.prompt_tokens * scale)).astype(np.int64)
    output = np.maximum(1, np.rint(trace.output_tokens * scale)).astype(np.int64)
    return replace(trace, prompt_tokens=prompt, output_tokens=output,
                   hash_ids=_trim_hash_ids(trace, prompt))


def _clip_context(trace: Trace, max_tokens: int) -> Trace:
    """Clips so prompt + output <= max_tokens: the prompt first (>= 1), then the output."""
    prompt = np.clip(max_tokens - trace.output_tokens, 1, trace.prompt_tokens)
    output = np.minimum(trace.output_tokens, max_tokens - prompt)
    return replace(trace, prompt_tokens=prompt.astype(np.int64),
                   output_tokens=output.astype(np.int64),
                   hash_ids=_trim_hash_ids(trace, prompt))


# --------------------------------------------------------------------------- text and CSV


def _read_text(path: Path) -> str:
    """Reads a whole file as UTF-8 (a BOM is skipped).

    Raises:
        TraceError: The file is not UTF-8 text.
    """
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _err(path, line, f"byte {data[exc.start]:#04x} is not UTF-8 text",
                   "save the file as UTF-8 (or plain ASCII) text") from None


def _csv_header(
    reader: Iterator[list[str]], path: Path, fmt: str, required: tuple[str, ...]
) -> list[str]:
    """Reads the header row and checks that it has the required columns."""
    header = next(reader, None)
    if header is None:
        raise _err(path, 1, "empty file",
                   f"{fmt} files start with the header `{','.join(required)}`")
    header = [name.strip() for name in header]
    missing = [name for name in required if name not in header]
    if missing:
        raise _err(path, 1, f"header `{','.join(header)}` lacks {', '.join(missing)}",
                   f"{fmt} files start with the header `{','.join(required)}`"
                   f" (formats: {_formats_help()})")
    return header


def _read_csv_columns(
    path: Path, fmt: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> tuple[dict[str, list[str]], np.ndarray]:
    """Reads the named columns of a CSV file as strings.

    Returns:
        Column name -> cell strings, and the 1-based file line of each data row.
    """
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    header = _csv_header(reader, path, fmt, required)
    names = [name for name in (*required, *optional) if name in header]
    cells: list[list[str]] = [[] for _ in names]
    where = [header.index(name) for name in names]
    lines: list[int] = []
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                raise _err(path, reader.line_num, f"{len(row)} fields, the header has "
                           f"{len(header)}", f"give every row the columns `{','.join(header)}`")
            for column, j in zip(cells, where):
                column.append(row[j])
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise _err(path, reader.line_num, f"bad CSV ({exc})", "fix the quoting") from None
    if not lines:
        raise _err(path, 2, "no data rows after the header", "add at least one request")
    return dict(zip(names, cells)), np.asarray(lines, dtype=np.int64)


def _int_column(cells: list[str], lines: np.ndarray, path: Path, name: str) -> np.ndarray:
    """Converts cells to int64 token counts (>= 0); ``12.0`` is accepted as 12."""
    try:
        values = np.asarray(cells).astype(np.int64)
    except (ValueError, OverflowError):
        values = np.empty(len(cells), dtype=np.int64)
        for i, cell in enumerate(cells):
            match = _INT_RE.fullmatch(cell)
            if match is None or abs(int(match.group(1))) >= 2**63:
                raise _err(path, lines[i], f"{name} {cell!r} is not an integer",
                           "write a whole number of tokens") from None
            values[i] = int(match.group(1))
    negative = np.flatnonzero(values < 0)
    if negative.size:
        i = negative[0]
        raise _err(path, lines[i], f"{name} is negative ({values[i]})",
                   "token counts must be >= 0; fix or remove the row")
    return values


def _float_column(cells: list[str], lines: np.ndarray, path: Path, name: str) -> np.ndarray:
    """Converts cells to finite float64 values."""
    try:
        values = np.asarray(cells).astype(np.float64)
    except ValueError:
        values = np.empty(len(cells), dtype=np.float64)
        for i, cell in enumerate(cells):
            try:
                values[i] = float(cell)
            except ValueError:
                raise _err(path, lines[i], f"{name} {cell!r} is not a number",
                           "write the time as a decimal number of seconds") from None
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise _err(path, lines[bad[0]], f"{name} is {cells[bad[0]]!r}",
                   "write a finite number of seconds")
    return values


def _relative_times(t: np.ndarray, lines: np.ndarray, path: Path, name: str) -> np.ndarray:
    """Checks that times do not go backwards (beyond jitter) and re-bases them to 0."""
    step = np.diff(t)
    back = np.flatnonzero(step < -TIME_TOLERANCE_S)
    if back.size:
        i = back[0] + 1
        raise _err(path, lines[i], f"{name} goes backwards by {-step[i - 1]:.6g} s",
                   "sort the rows by arrival time")
    t = np.maximum.accumulate(t)
    return t - t[0]


# --------------------------------------------------------------------------- timestamps


def _offset_s(offset: str | None) -> int:
    """Seconds east of UTC of a ``Z`` / ``+HH:MM`` / ``-HHMM`` / ``+HH`` suffix."""
    if not offset or offset.upper() == "Z":
        return 0
    match = _OFFSET_RE.fullmatch(offset)
    assert match is not None
    seconds = int(match.group(2)) * 3600 + int(match.group(3) or 0) * 60
    return -seconds if match.group(1) == "-" else seconds


def _split_timestamps(cells: list[str], lines: np.ndarray, path: Path) -> list[tuple]:
    """Matches each timestamp against ``YYYY-MM-DD HH:MM:SS[.frac][offset]``."""
    parts = []
    for i, cell in enumerate(cells):
        match = _TS_RE.fullmatch(cell)
        if match is None:
            raise _err(path, lines[i], f"TIMESTAMP {cell!r} is not a date and time",
                       "write it as YYYY-MM-DD HH:MM:SS[.fraction][+HH:MM]")
        parts.append(match.groups())
    return parts


def _parse_timestamps(cells: list[str], lines: np.ndarray, path: Path) -> np.ndarray:
    """Parses date-time cells to int64 nanoseconds since 1970 UTC (naive times taken as UTC)."""
    dates, hours, minutes, seconds, fracs, offsets = zip(*_split_timestamps(cells, lines, path))
    try:
        days = np.asarray(dates, dtype="datetime64[D]").astype(np.int64)
    except ValueError:
        for i, date in enumerate(dates):
            try:
                np.datetime64(date, "D")
            except ValueError:
                raise _err(path, lines[i], f"TIMESTAMP date {date!r} does not exist",
                           "fix the date (YYYY-MM-DD)") from None
        raise
    clock = np.asarray([hours, minutes, seconds]).astype(np.int64)
    bad = np.flatnonzero((clock[0] > 23) | (clock[1] > 59) | (clock[2] > 60))
    if bad.size:
        raise _err(path, lines[bad[0]], f"TIMESTAMP {cells[bad[0]].strip()!r} has no such "
                   "time of day", "use HH:MM:SS with HH < 24, MM < 60, SS < 60")
    frac_ns = np.asarray([(f or "")[:9].ljust(9, "0") for f in fracs]).astype(np.int64)
    shift = {offset: _offset_s(offset) for offset in set(offsets)}
    offset_s = np.asarray([shift[offset] for offset in offsets], dtype=np.int64)
    total_s = days * 86400 + clock[0] * 3600 + clock[1] * 60 + clock[2] - offset_s
    return total_s * 1_000_000_000 + frac_ns


# --------------------------------------------------------------------------- assembling


def _assemble(
    path: Path,
    fmt: str,
    arrival: np.ndarray | None,
    prompt: np.ndarray,
    output: np.ndarray,
    metadata: dict[str, object],
    *,
    selected: np.ndarray | None = None,
    hash_ids: tuple[np.ndarray, ...] | None = None,
) -> Trace:
    """Drops rows with zero tokens (counted in ``dropped_rows``) and builds the Trace."""
    usable = (prompt > 0) & (output > 0)
    if selected is None:
        selected = np.ones(len(prompt), dtype=bool)
    keep = selected & usable
    metadata = {**metadata, "dropped_rows": int(np.count_nonzero(selected & ~usable))}
    if not keep.any():
        raise _err(path, 1, f"no usable request ({metadata['dropped_rows']} rows with zero "
                   f"tokens dropped, {int(np.count_nonzero(~selected))} filtered out)",
                   "check the file and the filters")
    block = MOONCAKE_BLOCK_TOKENS if hash_ids is not None else None
    trace = Trace(str(path), fmt, arrival, prompt, output, hash_ids, block, metadata)
    return trace if keep.all() else _take(trace, keep)


# --------------------------------------------------------------------------- CSV formats


def _read_azure(path: Path, fmt: str) -> Trace:
    """Reads an Azure LLM inference trace (2023 or 2024)."""
    cols, lines = _read_csv_columns(path, fmt, _AZURE_COLS)
    ns = _parse_timestamps(cols["TIMESTAMP"], lines, path)
    arrival = _relative_times((ns - ns[0]) / 1e9, lines, path, "TIMESTAMP")
    prompt = _int_column(cols["ContextTokens"], lines, path, "ContextTokens")
    output = _int_column(cols["GeneratedTokens"], lines, path, "GeneratedTokens")
    start = str(np.datetime64(int(ns[0]), "ns"))
    return _assemble(path, fmt, arrival, prompt, output, {"start_time": start})


def _read_vidur(path: Path) -> Trace:
    """Reads a Vidur processed trace (``arrived_at`` in seconds)."""
    cols, lines = _read_csv_columns(path, "vidur", _VIDUR_COLS)
    t = _float_column(cols["arrived_at"], lines, path, "arrived_at")
    arrival = _relative_times(t, lines, path, "arrived_at")
    prompt = _int_column(cols["num_prefill_tokens"], lines, path, "num_prefill_tokens")
    output = _int_column(cols["num_decode_tokens"], lines, path, "num_decode_tokens")
    return _assemble(path, "vidur", arrival, prompt, output, {})


def _match_filter(
    values: np.ndarray, wanted: str | None, path: Path, column: str
) -> np.ndarray:
    """Rows whose ``column`` equals ``wanted`` (case-insensitive); all rows if None."""
    if wanted is None:
        return np.ones(len(values), dtype=bool)
    keep = np.char.lower(np.char.strip(values.astype(str))) == wanted.strip().lower()
    if not keep.any():
        present = ", ".join(repr(v) for v in sorted(set(values.tolist())))
        raise _err(path, 1, f"no row has {column} = {wanted!r}",
                   f"choose one of the values present: {present}")
    return keep


def _read_burstgpt(path: Path, model: str | None, log_type: str | None) -> Trace:
    """Reads a BurstGPT CSV, optionally keeping one Model and/or one Log Type."""
    cols, lines = _read_csv_columns(path, "burstgpt", _BURSTGPT_COLS, ("Log Type",))
    t = _float_column(cols["Timestamp"], lines, path, "Timestamp")
    arrival = _relative_times(t, lines, path, "Timestamp")
    prompt = _int_column(cols["Request tokens"], lines, path, "Request tokens")
    output = _int_column(cols["Response tokens"], lines, path, "Response tokens")
    models = np.asarray(cols["Model"])
    if log_type is not None and "Log Type" not in cols:
        raise _err(path, 1, "no `Log Type` column to filter on",
                   f"drop burstgpt_log_type, or use the header `{_BURSTGPT_HEADER}`")
    logs = np.asarray(cols.get("Log Type", [""] * len(models)))
    selected = (_match_filter(models, model, path, "Model")
                & _match_filter(logs, log_type, path, "Log Type"))
    kept = selected & (prompt > 0) & (output > 0)
    meta: dict[str, object] = {
        "failed_rows": int(np.count_nonzero(selected & (output == 0))),
        "filtered_rows": int(np.count_nonzero(~selected)),
        "models": tuple(sorted(set(models[kept].tolist()))),
        "log_types": tuple(sorted(set(logs[kept].tolist()) - {""})),
    }
    return _assemble(path, "burstgpt", arrival, prompt, output, meta, selected=selected)


# --------------------------------------------------------------------------- JSON formats


def _json_int(value: object, path: Path, line: int, name: str) -> int:
    """Checks that a JSON value is a non-negative integer and returns it."""
    if type(value) is not int or value < 0:
        raise _err(path, line, f"{name} is {value!r}, not a non-negative integer",
                   "write a whole number of tokens")
    return value


def _mooncake_row(line: str, lineno: int, path: Path) -> tuple[float, int, int, list[int]]:
    """Parses one Mooncake JSON line into (timestamp ms, input, output, hash ids)."""
    example = '{"timestamp": 0, "input_length": 6758, "output_length": 500, "hash_ids": [0]}'
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _err(path, lineno, f"bad JSON ({exc.msg}, column {exc.colno})",
                   f"each line must be one JSON object like {example}") from None
    if not isinstance(row, dict) or any(key not in row for key in _MOONCAKE_KEYS):
        raise _err(path, lineno, f"a row needs the keys {', '.join(_MOONCAKE_KEYS)}",
                   f"write each line like {example}")
    stamp = row["timestamp"]
    if type(stamp) not in (int, float) or not math.isfinite(stamp):
        raise _err(path, lineno, f"timestamp is {stamp!r}", "write milliseconds as a number")
    ids = row["hash_ids"]
    if not isinstance(ids, list) or not all(type(h) is int for h in ids):
        raise _err(path, lineno, "hash_ids is not a list of integers",
                   "write the prefix-block ids as a JSON list of integers")
    return (stamp, _json_int(row["input_length"], path, lineno, "input_length"),
            _json_int(row["output_length"], path, lineno, "output_length"), ids)


def _read_mooncake(path: Path) -> Trace:
    """Reads a Mooncake JSON-lines trace (timestamps in ms, 512-token hash blocks)."""
    stamps: list[float] = []
    prompt: list[int] = []
    output: list[int] = []
    ids: list[list[int]] = []
    lines: list[int] = []
    for lineno, line in enumerate(_read_text(path).split("\n"), 1):
        if not line.strip():
            continue
        stamp, p, o, h = _mooncake_row(line, lineno, path)
        stamps.append(stamp)
        prompt.append(p)
        output.append(o)
        ids.append(h)
        lines.append(lineno)
    if not lines:
        raise _err(path, 1, "empty file", f"expected JSON lines like {_FORMAT_HELP['mooncake']}")
    where = np.asarray(lines, dtype=np.int64)
    arrival = _relative_times(np.asarray(stamps, dtype=np.float64) / 1000.0, where, path,
                              "timestamp")
    hash_ids = tuple(np.asarray(h, dtype=np.int64) for h in ids)
    return _assemble(path, "mooncake", arrival, np.asarray(prompt, dtype=np.int64),
                     np.asarray(output, dtype=np.int64), {}, hash_ids=hash_ids)


def _key_line(text: str, key: str) -> int:
    """The 1-based line where ``"key"`` first appears in a JSON text (1 if absent)."""
    at = text.find(f'"{key}"')
    return text.count("\n", 0, at) + 1 if at >= 0 else 1


def _vllm_lists(doc: dict, text: str, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns input lengths, output lengths and a failed-request mask of a vLLM result."""
    missing = [key for key in _VLLM_KEYS if not isinstance(doc.get(key), list)]
    if missing:
        raise _err(path, 1, f"no per-request lists {', '.join(missing)}",
                   "re-run `vllm bench serve` with --save-result --save-detailed")
    n = len(doc["input_lens"])
    for key in _VLLM_KEYS:
        if len(doc[key]) != n:
            raise _err(path, _key_line(text, key), f"{key} has {len(doc[key])} entries, "
                       f"input_lens has {n}", "use the file exactly as vllm wrote it")
    columns = []
    for key in ("input_lens", "output_lens"):
        line = _key_line(text, key)
        columns.append(np.asarray([_json_int(v, path, line, f"{key}[{i}]")
                                  for i, v in enumerate(doc[key])], dtype=np.int64))
    failed = np.asarray([bool(e) for e in doc["errors"]], dtype=bool)
    return columns[0], columns[1], failed


def _vllm_metadata(doc: dict) -> dict[str, object]:
    """Run settings of a vLLM benchmark result; ``request_rate`` "inf" becomes math.inf."""
    meta: dict[str, object] = {key: doc[key] for key in _VLLM_META if key in doc}
    rate = meta.get("request_rate")
    if isinstance(rate, str):
        try:
            meta["request_rate"] = float(rate)
        except ValueError:
            pass
    return meta


def _read_vllm_bench(path: Path) -> Trace:
    """Reads a ``vllm bench serve --save-result --save-detailed`` JSON (no arrival times)."""
    text = _read_text(path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _err(path, exc.lineno, f"bad JSON ({exc.msg}, column {exc.colno})",
                   "use the JSON file written by `vllm bench serve --save-result`") from None
    if not isinstance(doc, dict):
        raise _err(path, 1, "the JSON is not an object",
                   "use the JSON file written by `vllm bench serve --save-result`")
    prompt, output, failed = _vllm_lists(doc, text, path)
    output = np.where(failed, 0, output)  # a failed request is dropped like an empty one
    meta = {**_vllm_metadata(doc), "failed_rows": int(np.count_nonzero(output == 0))}
    return _assemble(path, "vllm_bench", None, prompt, output, meta)


# --------------------------------------------------------------------------- entry points


def _head(path: Path, size: int = 1 << 20) -> tuple[str, list[str]]:
    """The first ``size`` bytes of a file as text, and its first two lines."""
    with open(path, "rb") as f:
        data = f.read(size)
    text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
    return text, text.split("\n", 2)[:2]


def _detect_json(path: Path, text: str, first: str) -> TraceFormat:
    """Tells a Mooncake JSON-lines file from a vLLM benchmark result."""
    try:
        row = json.loads(first)
    except json.JSONDecodeError:
        row = None
    if isinstance(row, dict) and "input_length" in row and "timestamp" in row:
        return "mooncake"
    if '"input_lens"' in text or '"num_prompts"' in text:
        return "vllm_bench"
    raise _err(path, 1, "JSON of an unknown trace format", f"expected {_formats_help()}")


def _azure_flavour(second: str) -> TraceFormat:
    """``azure2023`` for naive 7-digit timestamps, else ``azure2024``."""
    match = _TS_RE.fullmatch(second.split(",", 1)[0].strip().strip('"'))
    if match is not None and match.group(6) is None and len(match.group(5) or "") == 7:
        return "azure2023"
    return "azure2024"


def detect_format(path: str | Path) -> TraceFormat:
    """Tells the format of a trace file from its header (or first line).

    Raises:
        TraceError: The file is empty or in none of the known formats (the message lists them).
    """
    path = Path(path)
    text, lines = _head(path)
    first = lines[0].strip() if lines else ""
    if not first:
        raise _err(path, 1, "empty first line", f"expected one of: {_formats_help()}")
    if first.startswith(("{", "[")):
        return _detect_json(path, text, first)
    header = {name.strip() for name in next(csv.reader([first]))}
    if set(_AZURE_COLS) <= header:
        return _azure_flavour(lines[1] if len(lines) > 1 else "")
    if set(_VIDUR_COLS) <= header:
        return "vidur"
    if set(_BURSTGPT_COLS) <= header:
        return "burstgpt"
    if set(_LENGTH_COLS) <= header:
        raise _err(path, 1, "a length table (no arrival times), not a trace",
                   "read it with read_length_table()")
    raise _err(path, 1, f"unknown header `{first[:200]}`", f"expected one of: {_formats_help()}")


def read_trace(
    path: str | Path,
    format: TraceFormat | Literal["auto"] = "auto",
    *,
    burstgpt_model: str | None = None,
    burstgpt_log_type: str | None = None,
) -> Trace:
    """Reads a request trace.

    Args:
        path: The trace file.
        format: One of ``TRACE_FORMATS``, or "auto" to detect it (:func:`detect_format`).
        burstgpt_model: BurstGPT only: keep this Model ("ChatGPT", "GPT-4").
        burstgpt_log_type: BurstGPT only: keep this Log Type ("Conversation log", "API log").

    Returns:
        The trace, rows in file order, unusable rows dropped (see ``metadata``).

    Raises:
        TraceError: The file is malformed (the message names file, line and fix).
        ValueError: An unknown format, or BurstGPT filters for another format.
    """
    path = Path(path)
    fmt = detect_format(path) if format == "auto" else format
    if fmt not in TRACE_FORMATS:
        raise ValueError(f"unknown trace format {format!r}; use one of {TRACE_FORMATS} or 'auto'")
    if fmt != "burstgpt" and (burstgpt_model is not None or burstgpt_log_type is not None):
        raise ValueError(f"{path}: burstgpt_model / burstgpt_log_type apply to BurstGPT files, "
                         f"this one is {fmt}")
    if fmt in ("azure2023", "azure2024"):
        return _read_azure(path, fmt)
    if fmt == "vidur":
        return _read_vidur(path)
    if fmt == "burstgpt":
        return _read_burstgpt(path, burstgpt_model, burstgpt_log_type)
    if fmt == "mooncake":
        return _read_mooncake(path)
    return _read_vllm_bench(path)


def read_length_table(path: str | Path) -> LengthTable:
    """Reads (prompt, output) length rows.

    Accepts the ShareGPT / arXiv stats CSVs (``num_prefill_tokens,num_decode_tokens,...``)
    and any trace file (its length columns). Rows with zero tokens are dropped.

    Raises:
        TraceError: The file is malformed or of an unknown kind.
    """
    path = Path(path)
    _, lines = _head(path)
    header = {name.strip() for name in next(csv.reader([lines[0]]), [])} if lines else set()
    if not set(_LENGTH_COLS) <= header or "arrived_at" in header:
        trace = read_trace(path)
        return LengthTable(str(path), trace.prompt_tokens, trace.output_tokens)
    cols, where = _read_csv_columns(path, "length table", _LENGTH_COLS)
    prompt = _int_column(cols["num_prefill_tokens"], where, path, "num_prefill_tokens")
    output = _int_column(cols["num_decode_tokens"], where, path, "num_decode_tokens")
    keep = (prompt > 0) & (output > 0)
    return LengthTable(str(path), prompt[keep], output[keep])
