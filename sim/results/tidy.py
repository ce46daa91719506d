"""Result rows as a tidy table: one row per server and sweep point, one column per sweep field
(its dotted path), then every metric. Works for one-field and grid sweeps alike."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["tidy_rows", "write_tidy_csv"]


def tidy_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``[{"server", "engine", <sweep field>..., <metric>...}]`` from rows with a ``sweep`` dict."""
    fields = list(dict.fromkeys(k for r in rows for k in r.get("sweep", {})))
    out = []
    for r in rows:
        row = {"server": r["server"], "engine": r.get("engine", "")}
        row.update({f: r.get("sweep", {}).get(f) for f in fields})
        row.update({k: v for k, v in r.items() if k not in ("server", "engine", "sweep", "notes")})
        out.append(row)
    return out


def write_tidy_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write :func:`tidy_rows` as CSV; returns the path."""
    table = tidy_rows(rows)
    out = Path(path)
    with out.open("w", newline="") as fh:
        if table:
            writer = csv.DictWriter(fh, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    return out
