"""Azure LLM inference traces: ``azure2023`` (Splitwise, ISCA'24: CSV
``TIMESTAMP,ContextTokens,GeneratedTokens``, naive timestamps with 7 fractional digits, no
trailing newline) and ``azure2024`` (DynamoLLM, week-long: same columns, UTC timestamps that may
carry an offset and any number of fractional digits)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from sim.traces.base import Trace, TraceReader, register
from sim.traces.parsing import (
    TS_RE,
    _assemble,
    _int_column,
    _parse_timestamps,
    _read_csv_columns,
    _relative_times,
)

_AZURE_COLS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def _read_azure(path: Path, fmt: str) -> Trace:
    """Reads an Azure LLM inference trace (2023 or 2024)."""
    cols, lines = _read_csv_columns(path, fmt, _AZURE_COLS)
    ns = _parse_timestamps(cols["TIMESTAMP"], lines, path)
    arrival = _relative_times((ns - ns[0]) / 1e9, lines, path, "TIMESTAMP")
    prompt = _int_column(cols["ContextTokens"], lines, path, "ContextTokens")
    output = _int_column(cols["GeneratedTokens"], lines, path, "GeneratedTokens")
    start = str(np.datetime64(int(ns[0]), "ns"))
    return _assemble(path, fmt, arrival, prompt, output, {"start_time": start})



def _is_azure(first: str) -> bool:
    return set(_AZURE_COLS) <= {name.strip() for name in next(csv.reader([first]))}


def _azure_flavour(second: str) -> str:
    """``azure2023`` for naive 7-digit timestamps, else ``azure2024``."""
    match = TS_RE.fullmatch(second.split(",", 1)[0].strip().strip('"'))
    if match is not None and match.group(6) is None and len(match.group(5) or "") == 7:
        return "azure2023"
    return "azure2024"



register(TraceReader(
    "azure2023", "CSV `TIMESTAMP,ContextTokens,GeneratedTokens` (Azure LLM trace 2023)",
    lambda path: _read_azure(path, "azure2023"),
    lambda text, first, second: _is_azure(first) and _azure_flavour(second) == "azure2023",
))
register(TraceReader(
    "azure2024", "CSV `TIMESTAMP,ContextTokens,GeneratedTokens`, UTC times (Azure 2024)",
    lambda path: _read_azure(path, "azure2024"),
    lambda text, first, second: _is_azure(first) and _azure_flavour(second) == "azure2024",
))
