"""The results table of a run, and the warnings a reader must see beside it.

:func:`table_rows` gives the header and the cells (strings) of one table, a row per server and
sweep value; :func:`point_warnings` the lines to print under it. The CLI only prints them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["CAPTION", "MIN_COMPLETED", "columns", "point_warnings", "table_rows"]

MIN_COMPLETED = 30
"""Fewer completed requests than this give no meaningful p99 (the top 1 % is not one request)."""

COLUMNS = [
    ("server", "server", "{}"),
    ("completed", "done", "{}"),
    ("rejected", "rejected", "{}"),
    ("timeouts", "timeout", "{}"),
    ("cancelled", "aborted", "{}"),
    ("output_throughput", "out tok/s", "{:.1f}"),
    ("request_throughput", "req/s", "{:.2f}"),
    ("request_goodput", "good/s", "{:.2f}"),
    ("median_ttft_ms", "TTFT p50", "{:.0f}"),
    ("p99_ttft_ms", "TTFT p99", "{:.0f}"),
    ("median_tpot_ms", "TPOT p50", "{:.1f}"),
    ("median_e2el_ms", "E2E p50", "{:.0f}"),
    ("p99_e2el_ms", "E2E p99", "{:.0f}"),
]
"""(metric, header, format); ``request_goodput`` only when the scenario sets an SLO."""

CAPTION = ("latencies in ms over completed requests; out tok/s, req/s and good/s (meeting the SLO) "
           "per second of the whole run, as vllm bench serve; timeout: the client gave up; "
           "aborted: refused or aborted by the engine")


def _fmt(value: Any, pattern: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    try:
        return pattern.format(value)
    except (ValueError, TypeError):
        return str(value)


def columns(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """The columns to show: goodput only when some row has it (an SLO is set)."""
    has_goodput = any(r.get("request_goodput") is not None for r in rows)
    return [c for c in COLUMNS if c[0] != "request_goodput" or has_goodput]


def _fields(sweep: str | Sequence[str] | None) -> list[str]:
    """The swept fields: none, one dotted path, or the fields of a grid."""
    return [] if not sweep else [sweep] if isinstance(sweep, str) else list(sweep)


def table_rows(rows: Sequence[dict[str, Any]], sweep: str | Sequence[str] | None) -> tuple[list[str], list[list[str]]]:
    """(headers, cells) of the table: a column per swept field, then the metrics."""
    cols, fields = columns(rows), _fields(sweep)
    headers = [f.split(".")[-1] for f in fields] + [head for _, head, _ in cols]
    cells = [[str(r["sweep"].get(f, "")) for f in fields]
             + [_fmt(r.get(key), pat) for key, _, pat in cols] for r in rows]
    if any(r.get("notes", {}).get("retries") for r in rows):  # fleets whose clients retry refused requests
        headers.append("retries")
        for r, row_cells in zip(rows, cells, strict=True):
            row_cells.append(str(r.get("notes", {}).get("retries", "-")))
    return headers, cells


def point_warnings(rows: Sequence[dict[str, Any]], sweep: str | Sequence[str] | None) -> list[str]:
    """A line for each point where more than half the requests failed (timed out, were rejected
    or aborted), or where fewer than :data:`MIN_COMPLETED` completed."""
    out = []
    for r in rows:
        at = ", ".join(f"{f.split('.')[-1]}={r['sweep'].get(f)}" for f in _fields(sweep))
        where = f"{r['server']}" + (f" at {at}" if at else "")
        arrived, done, failed = r["arrived"], r["completed"], r["failed"]
        if arrived and failed > arrived / 2:
            out.append(f"{where}: {failed} of {arrived} requests failed ({r['timeouts']} timed out, "
                       f"{r['rejected']} rejected, {r['cancelled']} aborted): the server is overloaded; "
                       "its throughput and latencies describe the few that got through")
        if done < MIN_COMPLETED:
            out.append(f"{where}: only {done} request(s) completed, fewer than {MIN_COMPLETED}: "
                       "too few for a p99; run more requests")
    return out
