"""Request traces and length tables: the columns every reader produces, their transforms, and
the registry of readers (one module per format in this package).

Supported formats (``TraceFormat``; each module says more):

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

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

TraceFormat = Literal["azure2023", "azure2024", "mooncake", "vidur", "burstgpt", "vllm_bench"]
"""Names of the formats (one reader each, registered in :data:`READERS`)."""

TIME_TOLERANCE_S = 1e-3
"""A timestamp may go backwards by at most this much (clock jitter); more is an error."""

LENGTH_COLS = ("num_prefill_tokens", "num_decode_tokens")
"""Columns of a length table (ShareGPT / arXiv stats CSVs): lengths without arrival times."""


class TraceError(ValueError):
    """A trace file could not be read.

    The message names the file, the line (1-based, header = line 1) and the fix.
    """


def _err(path: str | Path, line: int, what: str, fix: str) -> TraceError:
    """Builds a TraceError with the standard ``path:line: what — fix`` message."""
    return TraceError(f"{path}:{int(line)}: {what} — {fix}")


@dataclass(frozen=True)
class TraceReader:
    """One trace format: how to recognise its files and how to read them."""

    name: str
    """The format's name (a :data:`TraceFormat`)."""
    help: str
    """What its files look like, for error messages."""
    read: Callable[..., Trace]
    """``read(path, **options) -> Trace``."""
    sniff: Callable[[str, str, str], bool]
    """``sniff(text_head, first_line, second_line)``: does a file with this head look like it?"""


READERS: dict[str, TraceReader] = {}
"""Format name -> reader, in registration (= detection) order."""


def register(reader: TraceReader) -> TraceReader:
    """Adds a format to :data:`READERS` (each format module calls it once at import)."""
    READERS[reader.name] = reader
    return reader


def formats_help() -> str:
    """Lists the known formats and what their files look like, for error messages."""
    items = [f"{r.name}: {r.help}" for r in READERS.values()]
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


