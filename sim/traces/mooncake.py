"""Mooncake (FAST'25) JSON lines ``{"timestamp": ms, "input_length", "output_length",
"hash_ids": [...]}``; hash ids name 512-token prefix blocks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from sim.traces.base import Trace, TraceReader, _err, register
from sim.traces.parsing import (
    _assemble,
    _json_int,
    _read_text,
    _relative_times,
)

MOONCAKE_BLOCK_TOKENS = 512
"""Tokens per prefix block named by one Mooncake hash id."""
_MOONCAKE_KEYS = ("timestamp", "input_length", "output_length", "hash_ids")
_HELP = 'JSON lines `{"timestamp", "input_length", "output_length", "hash_ids"}`'


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
        raise _err(path, 1, "empty file", f"expected JSON lines like {_HELP}")
    where = np.asarray(lines, dtype=np.int64)
    arrival = _relative_times(np.asarray(stamps, dtype=np.float64) / 1000.0, where, path,
                              "timestamp")
    hash_ids = tuple(np.asarray(h, dtype=np.int64) for h in ids)
    return _assemble(path, "mooncake", arrival, np.asarray(prompt, dtype=np.int64),
                     np.asarray(output, dtype=np.int64), {}, hash_ids=hash_ids,
                     hash_block_tokens=MOONCAKE_BLOCK_TOKENS)


def _sniff(text: str, first: str, second: str) -> bool:
    try:
        row = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(row, dict) and "input_length" in row and "timestamp" in row


register(TraceReader("mooncake", _HELP, _read_mooncake, _sniff))
