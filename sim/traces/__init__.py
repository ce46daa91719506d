"""Readers for public LLM request traces and request-length tables.

A trace is a sequence of requests, each with an arrival time, a prompt length and an output
length (in tokens). One module per format reads it into columns of numpy arrays
(:class:`Trace`) and registers itself in :data:`~sim.traces.base.READERS`; adding a format is
adding one module here and importing it below. Per-request length tables without arrival times
are :class:`LengthTable`. Every malformed input raises :class:`TraceError` naming the file, the
line and the fix.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

from sim.traces import azure, burstgpt, mooncake, vidur, vllm_bench  # noqa: F401  (register the formats)
from sim.traces.base import (
    LENGTH_COLS,
    READERS,
    LengthTable,
    Trace,
    TraceError,
    TraceFormat,
    _err,
    formats_help,
)
from sim.traces.mooncake import MOONCAKE_BLOCK_TOKENS
from sim.traces.parsing import _int_column, _read_csv_columns

__all__ = [
    "MOONCAKE_BLOCK_TOKENS",
    "TRACE_FORMATS",
    "LengthTable",
    "Trace",
    "TraceError",
    "TraceFormat",
    "detect_format",
    "read_length_table",
    "read_trace",
]

TRACE_FORMATS: tuple[str, ...] = tuple(READERS)


def _head(path: Path, size: int = 1 << 20) -> tuple[str, list[str]]:
    """The first ``size`` bytes of a file as text, and its first two lines."""
    with open(path, "rb") as f:
        data = f.read(size)
    if b"\x00" in data:
        raise _err(path, data[: data.index(b"\x00")].count(b"\n") + 1, "a NUL byte: this is a binary file, not a trace",
                   f"give a text trace ({formats_help()})")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(data) - 4:  # (not a character cut by the end of the sample)
            raise _err(path, data[: exc.start].count(b"\n") + 1, f"byte {data[exc.start]:#04x} is not UTF-8 text",
                       "save the file as UTF-8 (or plain ASCII) text") from None
    text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
    return text, text.split("\n", 2)[:2]


def _sniff(reader: object, text: str, first: str, second: str) -> bool:
    try:
        return bool(reader.sniff(text, first, second))  # type: ignore[attr-defined]
    except (csv.Error, ValueError):
        return False



def _is_length_table(first: str) -> bool:
    try:
        return set(LENGTH_COLS) <= {name.strip() for name in next(csv.reader([first]), [])}
    except csv.Error:
        return False


def detect_format(path: str | Path) -> TraceFormat:
    """Tells the format of a trace file from its header (or first line).

    Raises:
        TraceError: The file is empty or in none of the known formats (the message lists them).
    """
    path = Path(path)
    text, lines = _head(path)
    first = lines[0].strip() if lines else ""
    if not first:
        raise _err(path, 1, "empty first line", f"expected one of: {formats_help()}")
    second = lines[1] if len(lines) > 1 else ""
    for reader in READERS.values():
        if _sniff(reader, text, first, second):
            return reader.name  # type: ignore[return-value]
    if first.startswith(("{", "[")):
        raise _err(path, 1, "JSON of an unknown trace format", f"expected {formats_help()}")
    if _is_length_table(first):
        raise _err(path, 1, "a length table (no arrival times), not a trace",
                   "read it with read_length_table()")
    raise _err(path, 1, f"unknown header `{first[:200]}`", f"expected one of: {formats_help()}")


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
    if fmt not in READERS:
        raise ValueError(f"unknown trace format {format!r}; use one of {TRACE_FORMATS} or 'auto'")
    if fmt != "burstgpt" and (burstgpt_model is not None or burstgpt_log_type is not None):
        raise ValueError(f"{path}: burstgpt_model / burstgpt_log_type apply to BurstGPT files, "
                         f"this one is {fmt}")
    if fmt == "burstgpt":
        return READERS[fmt].read(path, model=burstgpt_model, log_type=burstgpt_log_type)
    return READERS[fmt].read(path)


def read_length_table(path: str | Path) -> LengthTable:
    """Reads (prompt, output) length rows.

    Accepts the ShareGPT / arXiv stats CSVs (``num_prefill_tokens,num_decode_tokens,...``)
    and any trace file (its length columns). Rows with zero tokens are dropped.

    Raises:
        TraceError: The file is malformed or of an unknown kind.
    """
    path = Path(path)
    _, lines = _head(path)
    try:
        header = {name.strip() for name in next(csv.reader([lines[0]]), [])} if lines else set()
    except csv.Error:
        header = set()
    if not set(LENGTH_COLS) <= header or "arrived_at" in header:
        trace = read_trace(path)
        return LengthTable(str(path), trace.prompt_tokens, trace.output_tokens)
    cols, where = _read_csv_columns(path, "length table", LENGTH_COLS)
    prompt = _int_column(cols["num_prefill_tokens"], where, path, "num_prefill_tokens")
    output = _int_column(cols["num_decode_tokens"], where, path, "num_decode_tokens")
    keep = (prompt > 0) & (output > 0)
    if not keep.any():
        raise _err(path, 2, "no row with both lengths above 0", "add at least one usable row")
    return LengthTable(str(path), prompt[keep], output[keep])
