"""BurstGPT: CSV ``Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type`` (integer
seconds from the trace start; ``Response tokens`` = 0 marks a failed request), optionally
filtered to one Model and/or one Log Type."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from sim.traces.base import Trace, TraceReader, _err, register
from sim.traces.parsing import (
    _assemble,
    _float_column,
    _int_column,
    _read_csv_columns,
    _relative_times,
)

_BURSTGPT_COLS = ("Timestamp", "Model", "Request tokens", "Response tokens")
_BURSTGPT_HEADER = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type"


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


register(TraceReader(
    "burstgpt", f"CSV `{_BURSTGPT_HEADER}`",
    lambda path, model=None, log_type=None: _read_burstgpt(path, model, log_type),
    lambda text, first, second: set(_BURSTGPT_COLS) <= {n.strip() for n in next(csv.reader([first]))},
))
