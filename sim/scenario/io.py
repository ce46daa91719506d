"""Reading scenario files (YAML/TOML), validation messages, and ``--set`` overrides."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    ValidationError,
)

from sim.scenario.base import ScenarioError
from sim.scenario.document import Scenario


SCENARIO_SUFFIXES = (".yaml", ".yml", ".toml")
MAX_SCENARIO_BYTES = 16 << 20
"""A scenario file is a few kilobytes; a bigger one is not a scenario (traces are separate files)."""


def _read_text(path: Path) -> str:
    """The file as UTF-8 text, or a ScenarioError saying what it is instead."""
    if path.is_dir():
        raise ScenarioError(
            f"{path}: is a folder, not a scenario file; name one .yaml or .toml file "
            "(`servesim check` also takes folders)"
        )
    if path.suffix not in SCENARIO_SUFFIXES:
        raise ScenarioError(f"{path}: expected a .yaml, .yml or .toml scenario, got {path.suffix!r}; rename it")
    try:
        if path.stat().st_size > MAX_SCENARIO_BYTES:
            raise ScenarioError(
                f"{path}: {path.stat().st_size} bytes is not a scenario (at most {MAX_SCENARIO_BYTES >> 20} MiB); "
                "point trace files from workload.arrival.path instead"
            )
        data = path.read_bytes()
    except OSError as err:
        raise ScenarioError(f"{path}: cannot be read ({err.strerror or err}); check its permissions") from None
    if b"\x00" in data:
        raise ScenarioError(f"{path}: is a binary file, not a YAML/TOML scenario (see scenarios/seed_benchmark.yaml)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ScenarioError(
            f"{path}:{line}: byte {data[err.start]:#04x} is not UTF-8 text; save the file as UTF-8"
        ) from None
    if not text.strip():
        raise ScenarioError(
            f"{path}: is empty; a scenario needs name, model, hardware, workload and servers "
            "(see scenarios/seed_benchmark.yaml)"
        )
    return text


def _read_data(path: Path) -> Any:
    text = _read_text(path)
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        return yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as err:
        raise ScenarioError(f"{path}: not valid YAML/TOML: {err}") from None
    except (ValueError, OverflowError) as err:  # e.g. a YAML date that does not exist
        raise ScenarioError(f"{path}: a value cannot be read ({err}); quote it to keep it as text") from None
    except RecursionError:
        raise ScenarioError(f"{path}: nested too deeply to be a scenario") from None


def format_validation_error(source: str, err: ValidationError) -> str:
    """One line per problem: the field's dotted path, what is wrong, and how to fix it."""
    lines = [f"{source} is not a valid scenario:"]
    for e in err.errors():
        loc = ".".join(str(part) for part in e["loc"]
                       if not str(part).startswith("function-") and str(part) not in _UNION_TAGS)
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field; remove it or check its spelling (see `servesim check --help`)"
        elif e["type"] == "missing":
            msg = "required field is missing; add it"
        got = "" if e["type"] in ("missing", "extra_forbidden") or "input" not in e else f" (got {_short(e['input'])})"
        lines.append(f"  - {loc or '(top level)'}: {msg}{got}")
    return "\n".join(lines)


_UNION_TAGS = frozenset({
    "fixed", "uniform", "lognormal", "empirical", "poisson", "gamma", "constant", "ramp", "phases",
    "closed_loop", "trace", "roofline", "linear", "sampled", "ollama", "llama.cpp", "vllm", "single_queue",
    "serial_decode", "paged_batching", "server", "fleet", "str", "int", "float", "bool", "HfConfigModel",
    "dict[str,any]",
})
"""Names pydantic puts in an error's location for the variant of a union it tried; they are not
fields, so messages leave them out (``servers.0.max_model_len``, not ``servers.0.vllm.max_model_len``)."""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_scenario(data: Any, source: str = "<scenario>", base_dir: str = ".") -> Scenario:
    """Validate a scenario given as plain data."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario must be a mapping of fields, got {type(data).__name__}")
    try:
        return Scenario.model_validate({**data, "base_dir": base_dir})
    except ValidationError as err:
        raise ScenarioError(format_validation_error(source, err)) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read a YAML or TOML scenario file and validate it."""
    path = Path(path)
    if not path.exists():
        raise ScenarioError(f"{path}: no such scenario file; check the path")
    data = _read_data(path)
    return parse_scenario(data, str(path), str(path.parent))


def parse_value(text: str) -> Any:
    """Parse a ``--set`` value as YAML (numbers, booleans, lists), else keep the string."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def with_override(scenario: Scenario, path: str, value: Any) -> Scenario:
    """Return a copy with the dotted field ``path`` set to ``value`` (re-validated).

    ``servers.vllm.max_num_seqs`` addresses a server by its label; ``servers.0.x`` by index.
    """
    data = scenario.model_dump(mode="python", exclude_none=False)
    *parents, leaf = path.split(".")
    node: Any = data
    for key in parents:
        node = _child(node, key, path)
    if isinstance(node, list):
        raise ScenarioError(f"--set {path}: cannot set a whole list element; name a field inside it")
    if not isinstance(node, dict):
        raise ScenarioError(f"--set {path}: {'.'.join(parents)} is not a mapping")
    node[leaf] = value
    return parse_scenario(_drop_none(data), f"{scenario.name} with {path}={value!r}", scenario.base_dir)


def _child(node: Any, key: str, path: str) -> Any:
    if isinstance(node, list):
        if key.isdigit() and int(key) < len(node):
            return node[int(key)]
        for item in node:
            if isinstance(item, dict) and key in (item.get("name"), item.get("engine"), item.get("kind")):
                return item
        raise ScenarioError(f"--set {path}: no list element named {key!r}")
    if not isinstance(node, dict) or key not in node or node[key] is None:
        if isinstance(node, dict):
            node[key] = {}
            return node[key]
        raise ScenarioError(f"--set {path}: {key!r} is not a field here")
    return node[key]


def _drop_none(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _drop_none(v) for k, v in data.items() if v is not None and k != "base_dir"}
    if isinstance(data, list):
        return [_drop_none(v) for v in data]
    return data
