"""Saved sweep points (``OUT/points/*.json``): how a point is named, written and read back.

A point file is written atomically (a temporary file in the same folder, flushed and fsynced,
then renamed over the name), so a killed run leaves either the whole file or none. Its name is
a hash of everything that decides its result: the servesim version and a digest of the
simulator's source, the scenario at that sweep value, the contents of the files it reads
(traces, length tables, model configs), the server's resolved policy and cost model, and the
cost profile it uses. A file that cannot be read back is reported and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["code_fingerprint", "load_point", "point_key", "save_point"]

ROW_KEYS = ("server", "engine", "sweep")
"""Keys every saved row has (a file without them is not a point of this command)."""


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """servesim's version and a digest of the simulator's source and shipped data."""
    import sim

    root = Path(sim.__file__).resolve().parent
    digest = hashlib.sha256(getattr(sim, "__version__", "?").encode())
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".yaml", ".yml", ".json", ".csv") and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return f"{getattr(sim, '__version__', '?')}+{digest.hexdigest()[:12]}"


def _file_digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "unreadable"


def _data_files(node: Any, resolve: Any) -> list[Path]:
    """Files a scenario reads: every ``path``/``hf_config``/``profile`` that names a file."""
    out: list[Path] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("path", "hf_config", "profile") and isinstance(value, str):
                candidate = resolve(value)
                if candidate.is_file():
                    out.append(candidate)
            else:
                out.extend(_data_files(value, resolve))
    elif isinstance(node, list):
        for item in node:
            out.extend(_data_files(item, resolve))
    return out


def point_key(scenario: Any, sweep: dict[str, Any], server: str, resolved: Any) -> str:
    """The name of a point's file (16 hex digits)."""
    doc = scenario.model_dump(mode="json")
    files = {str(p): _file_digest(p) for p in _data_files(doc, scenario.resolve)}
    profile = resolved.profile.model_dump(mode="json") if resolved.profile is not None else None
    text = json.dumps({"code": code_fingerprint(), "scenario": doc, "files": files, "sweep": sweep,
                       "server": server, "profile": profile,
                       "resolved": repr((resolved.policy, resolved.cost, resolved.service, resolved.frontend))},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_point(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(row, None) for a good file; (None, why) for a corrupt one; (None, None) if absent."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError) as err:
        return None, f"unreadable ({err})"
    try:
        row = json.loads(text)
    except json.JSONDecodeError as err:
        return None, f"not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})"
    if not isinstance(row, dict) or any(key not in row for key in ROW_KEYS):
        return None, "not a saved point (keys missing)"
    return row, None


def save_point(path: Path, row: dict[str, Any]) -> None:
    """Write ``row`` to ``path`` atomically (temporary file, fsync, rename)."""
    data = json.dumps(row, default=float).encode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
