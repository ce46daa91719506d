"""Shared parsing for the trace readers: UTF-8 text, CSV columns, integers, timestamps, and
assembling the columns into a :class:`~sim.traces.base.Trace` (unusable rows dropped)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sim.traces.base import TIME_TOLERANCE_S, Trace, _err, _take, formats_help

_INT_RE = re.compile(r"\s*([+-]?\d+)(?:\.0*)?\s*")
TS_RE = re.compile(
    r"\s*(\d{4}-\d{2}-\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?\s*"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?\s*"
)
_OFFSET_RE = re.compile(r"([+-])(\d{2}):?(\d{2})?")


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
                   f" (formats: {formats_help()})")
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
        match = TS_RE.fullmatch(cell)
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
    hash_block_tokens: int | None = None,
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
    trace = Trace(str(path), fmt, arrival, prompt, output, hash_ids, hash_block_tokens, metadata)
    return trace if keep.all() else _take(trace, keep)


# --------------------------------------------------------------------------- CSV formats


def _json_int(value: object, path: Path, line: int, name: str) -> int:
    """Checks that a JSON value is a non-negative integer and returns it."""
    if type(value) is not int or value < 0:
        raise _err(path, line, f"{name} is {value!r}, not a non-negative integer",
                   "write a whole number of tokens")
    return value
