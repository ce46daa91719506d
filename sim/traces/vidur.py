"""Vidur's processed traces: CSV ``arrived_at,num_prefill_tokens,num_decode_tokens`` (seconds as
floats)."""

from __future__ import annotations

import csv
from pathlib import Path

from sim.traces.base import Trace, TraceReader, register
from sim.traces.parsing import (
    _assemble,
    _float_column,
    _int_column,
    _read_csv_columns,
    _relative_times,
)

_VIDUR_COLS = ("arrived_at", "num_prefill_tokens", "num_decode_tokens")


def _read_vidur(path: Path) -> Trace:
    """Reads a Vidur processed trace (``arrived_at`` in seconds)."""
    cols, lines = _read_csv_columns(path, "vidur", _VIDUR_COLS)
    t = _float_column(cols["arrived_at"], lines, path, "arrived_at")
    arrival = _relative_times(t, lines, path, "arrived_at")
    prompt = _int_column(cols["num_prefill_tokens"], lines, path, "num_prefill_tokens")
    output = _int_column(cols["num_decode_tokens"], lines, path, "num_decode_tokens")
    return _assemble(path, "vidur", arrival, prompt, output, {})



register(TraceReader(
    "vidur", "CSV `arrived_at,num_prefill_tokens,num_decode_tokens`", _read_vidur,
    lambda text, first, second: set(_VIDUR_COLS) <= {n.strip() for n in next(csv.reader([first]))},
))
