"""The JSON written by ``vllm bench serve --save-result --save-detailed``: per-request
``input_lens``/``output_lens``/``errors``, no arrival times."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sim.traces.base import Trace, TraceReader, _err, register
from sim.traces.parsing import (
    _assemble,
    _json_int,
    _read_text,
)

_VLLM_KEYS = ("input_lens", "output_lens", "errors")
_VLLM_META = ("date", "backend", "model_id", "num_prompts", "request_rate", "burstiness",
              "max_concurrency", "duration", "completed")


def _key_line(text: str, key: str) -> int:
    """The 1-based line where ``"key"`` first appears in a JSON text (1 if absent)."""
    at = text.find(f'"{key}"')
    return text.count("\n", 0, at) + 1 if at >= 0 else 1


def _vllm_lists(doc: dict, text: str, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns input lengths, output lengths and a failed-request mask of a vLLM result."""
    missing = [key for key in _VLLM_KEYS if not isinstance(doc.get(key), list)]
    if missing:
        raise _err(path, 1, f"no per-request lists {', '.join(missing)}",
                   "re-run `vllm bench serve` with --save-result --save-detailed")
    n = len(doc["input_lens"])
    for key in _VLLM_KEYS:
        if len(doc[key]) != n:
            raise _err(path, _key_line(text, key), f"{key} has {len(doc[key])} entries, "
                       f"input_lens has {n}", "use the file exactly as vllm wrote it")
    columns = []
    for key in ("input_lens", "output_lens"):
        line = _key_line(text, key)
        columns.append(np.asarray([_json_int(v, path, line, f"{key}[{i}]")
                                  for i, v in enumerate(doc[key])], dtype=np.int64))
    failed = np.asarray([bool(e) for e in doc["errors"]], dtype=bool)
    return columns[0], columns[1], failed


def _vllm_metadata(doc: dict) -> dict[str, object]:
    """Run settings of a vLLM benchmark result; ``request_rate`` "inf" becomes math.inf."""
    meta: dict[str, object] = {key: doc[key] for key in _VLLM_META if key in doc}
    rate = meta.get("request_rate")
    if isinstance(rate, str):
        try:
            meta["request_rate"] = float(rate)
        except ValueError:
            pass
    return meta


def _read_vllm_bench(path: Path) -> Trace:
    """Reads a ``vllm bench serve --save-result --save-detailed`` JSON (no arrival times)."""
    text = _read_text(path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _err(path, exc.lineno, f"bad JSON ({exc.msg}, column {exc.colno})",
                   "use the JSON file written by `vllm bench serve --save-result`") from None
    if not isinstance(doc, dict):
        raise _err(path, 1, "the JSON is not an object",
                   "use the JSON file written by `vllm bench serve --save-result`")
    prompt, output, failed = _vllm_lists(doc, text, path)
    output = np.where(failed, 0, output)  # a failed request is dropped like an empty one
    meta = {**_vllm_metadata(doc), "failed_rows": int(np.count_nonzero(output == 0))}
    return _assemble(path, "vllm_bench", None, prompt, output, meta)


# --------------------------------------------------------------------------- entry points


register(TraceReader(
    "vllm_bench", "JSON of `vllm bench serve --save-result --save-detailed`", _read_vllm_bench,
    lambda text, first, second: first.startswith(("{", "[")) and ('"input_lens"' in text or '"num_prompts"' in text),
))
