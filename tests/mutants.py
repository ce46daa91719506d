"""Scenario mutants for the crash-hunting tests (tests/test_fuzz.py).

A mutant is a shipped scenario with a few fields removed, retyped, pushed to extremes, renamed
to something unknown, or pointed at a bad file (binary, empty, not UTF-8, truncated, a folder,
missing). ``outcome`` checks a mutant the way ``servesim check`` does and, when check accepts
it, runs it with its size capped; anything but a clean refusal or a successful run is a crash.
"""

from __future__ import annotations

import copy
import random
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "scenarios").rglob("*.yaml"))

EXTREMES: list[Any] = [0, -1, 1, 2, 7, 2**31, 2**31 - 1, 2**63, -(2**63), 10**30, 1e308, -1e308,
                       float("nan"), float("inf"), float("-inf"), 1e-300, 0.5, -0.5, 3_000_000_000]
WRONG_TYPES: list[Any] = ["", "abc", "1e3", [], [1, 2], [{}], {}, {"x": 1}, None, True, False]
UNKNOWN = ["no-such-thing", "vllm2", "rtx-9090", "llama-99b", "q9_k", "Ollama", "", "../x", "auto"]
NAMED_KEYS = ("model", "hardware", "engine", "kind", "quantization", "kv_cache_dtype", "format",
              "version", "dtype", "runner", "profile", "path", "name")
PLAUSIBLE: dict[str, list[Any]] = {
    "version": ["0.1.40", "0.5.7", "0.6.7", "0.10.0", "0.30.0", "0.6.0", "0.11.0", "b6000", "b7100"],
    "quantization": ["q4_k_m", "q5_k_m", "q8_0", "q4_0", "f16", "awq", "gptq", "fp8"],
    "kv_cache_dtype": ["auto", "fp8", "q8_0", "q4_0"],
    "engine": ["vllm", "ollama", "llama.cpp"],
    "runner": ["llamarunner", "ollamarunner", "llama-server"],
    "hardware": ["h100-sxm", "rtx-4090", "a100-80gb-sxm", "rtx-3060", "apple-m2-ultra", "epyc-zen5-2c-vm", "l4"],
    "model": ["llama-3.1-8b", "llama-3.2-1b", "qwen2.5-32b", "smollm2-135m", "llama-3.1-70b", "gemma-2-2b"],
    "format": ["auto", "azure2023", "mooncake", "vidur", "vllm_bench"],
}
RUN_CAP = 40
"""Requests (and users) a check-accepted mutant is run with: the property is about crashes,
not about long runs."""


def load_shipped() -> list[tuple[str, dict[str, Any]]]:
    """Every shipped scenario as data, with relative file paths made absolute."""
    out = []
    for path in SHIPPED:
        data = yaml.safe_load(path.read_text())
        _absolute_paths(data, path.parent)
        out.append((str(path.relative_to(ROOT)), data))
    return out


def _absolute_paths(node: Any, base: Path) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("path", "hf_config") and isinstance(value, str) and not Path(value).is_absolute():
                node[key] = str((base / value).resolve())
            else:
                _absolute_paths(value, base)
    elif isinstance(node, list):
        for item in node:
            _absolute_paths(item, base)


def bad_files(folder: Path) -> list[str]:
    """Files no reader should accept (and one that is fine but cut mid-row)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    (folder / "binary.csv").write_bytes(bytes(rng.randrange(256) for _ in range(2000)))
    (folder / "empty.csv").write_bytes(b"")
    (folder / "latin1.csv").write_bytes(b"arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,10,5\n0.5,\xe9,5\n")
    (folder / "header_only.csv").write_bytes(b"arrived_at,num_prefill_tokens,num_decode_tokens\n")
    (folder / "huge_tokens.csv").write_bytes(
        b"arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,3000000000,5\n0.5,10,4000000000\n")
    (folder / "backwards.csv").write_bytes(b"arrived_at,num_prefill_tokens,num_decode_tokens\n5.0,10,5\n0.5,10,5\n")
    (folder / "nul.yaml").write_bytes(b"\x00\x01\x02name: x\n")
    (folder / "a_folder.csv").mkdir(exist_ok=True)
    mooncake = ROOT / "data" / "traces" / "mooncake_fast25"
    trace = next(iter(sorted(mooncake.glob("*.jsonl"))), None)
    if trace is not None:
        data = trace.read_bytes()[:5000]
        (folder / "truncated.jsonl").write_bytes(data[: data.rfind(b"\n") + 40])
    vidur = next(iter(sorted((ROOT / "data" / "traces").rglob("*.csv"))), None)
    if vidur is not None:
        data = vidur.read_bytes()[:3000]
        (folder / "truncated.csv").write_bytes(data)
    names = sorted(p.name for p in folder.iterdir())
    return [str(folder / n) for n in names] + [str(folder / "missing.csv")]


def _locations(node: Any, prefix: tuple = ()) -> Iterator[tuple]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _locations(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield (*prefix, i)
            yield from _locations(value, (*prefix, i))


def _parent(data: Any, loc: tuple) -> Any:
    node = data
    for key in loc[:-1]:
        node = node[key]
    return node


def _mutate_once(data: dict[str, Any], rnd: random.Random, files: list[str]) -> str:
    op = rnd.choice(["delete", "type", "extreme", "extreme", "scale", "name", "file", "add",
                     "plausible", "plausible", "plausible", "plausible"])
    if op == "file":
        target = rnd.choice(files)
        where = rnd.choice(["trace", "prompt", "output", "both", "hf", "profile", "existing"])
        workload = data.setdefault("workload", {}) if isinstance(data.get("workload", {}), dict) else {}
        if where == "trace":
            workload["arrival"] = {"kind": "trace", "path": target}
        elif where in ("prompt", "output", "both"):
            for key in {"prompt": ["prompt_tokens"], "output": ["output_tokens"],
                        "both": ["prompt_tokens", "output_tokens"]}[where]:
                workload[key] = {"kind": "empirical", "path": target}
        elif where == "hf":
            data["model"] = {"hf_config": target}
        elif where == "profile" and isinstance(data.get("servers"), list) and data["servers"]:
            server = rnd.choice(data["servers"])
            if isinstance(server, dict):
                server["cost"] = {"kind": "roofline", "profile": target}
        else:
            paths = [loc for loc in _locations(data) if loc[-1] in ("path", "hf_config")]
            if paths:
                loc = rnd.choice(paths)
                _parent(data, loc)[loc[-1]] = target
        return f"file {where}={Path(target).name}"
    locs = list(_locations(data))
    if not locs:
        return "empty"
    loc = rnd.choice(locs)
    parent, key = _parent(data, loc), loc[-1]
    value = parent[key]
    label = ".".join(map(str, loc))
    if op == "delete":
        del parent[key]
    elif op == "type":
        parent[key] = rnd.choice(WRONG_TYPES)
    elif op == "extreme":
        parent[key] = rnd.choice(EXTREMES)
    elif op == "scale" and isinstance(value, int | float) and not isinstance(value, bool):
        parent[key] = type(value)(value * rnd.choice([0, -1, 10, 1000, 10**6, 10**9, 2**20]))
    elif op == "name":
        named = [loc for loc in locs if loc[-1] in NAMED_KEYS]
        loc = rnd.choice(named) if named else loc
        _parent(data, loc)[loc[-1]] = rnd.choice(UNKNOWN)
        label = ".".join(map(str, loc))
    elif op == "plausible":
        named = [loc for loc in locs if loc[-1] in PLAUSIBLE]
        numeric = [loc for loc in locs if isinstance(_parent(data, loc)[loc[-1]], int | float | bool)]
        loc = rnd.choice(named + numeric) if named + numeric else loc
        parent, key = _parent(data, loc), loc[-1]
        old = parent[key]
        if key in PLAUSIBLE:
            parent[key] = rnd.choice(PLAUSIBLE[key])
        elif isinstance(old, bool):
            parent[key] = not old
        elif isinstance(old, int):
            parent[key] = rnd.randint(1, 2 ** rnd.randint(1, 16))
        else:
            parent[key] = round(rnd.uniform(0, 2) * (old or 1), 3)
        label = ".".join(map(str, loc))
    elif op == "add" and isinstance(value, dict):
        value[rnd.choice(["typo", "threads", "max_num_seqs", "parallel", "num_parallel", "ctx_size",
                          "block_size", "num_gpu_blocks_override", "enable_chunked_prefill",
                          "seed", "turns", "ramp_up_s", "warmup_requests", "timeout_s",
                          "duration_s", "limit", "speedup", "window_s", "start_spread_s", "think_time",
                          "max_model_len", "kv_unified", "gpu_memory_utilization", "num_kv_blocks",
                          "context_shift", "logits_all", "max_context_tokens", "use_lengths"])] = rnd.choice(
            [*EXTREMES[:12], *WRONG_TYPES[:4], [0, 1], [5, 2]])
    else:
        parent[key] = rnd.choice(EXTREMES + WRONG_TYPES)
    return f"{op} {label}"


def mutate(data: dict[str, Any], rnd: random.Random, files: list[str]) -> tuple[dict[str, Any], list[str]]:
    """A mutated deep copy of ``data`` and what was done to it."""
    data = copy.deepcopy(data)
    done = [_mutate_once(data, rnd, files) for _ in range(rnd.choice([1, 1, 1, 2, 2, 3]))]
    return data, done


def write(data: Any, path: Path) -> Path:
    """The mutant as a YAML file."""
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


class Hang(Exception):
    """A mutant ran longer than its time limit."""


def _alarm(signum: int, frame: Any) -> None:
    raise Hang


def outcome(path: Path, time_limit_s: int = 30) -> str:
    """"refused", "ran", or raises: whatever escapes is a crash (a traceback in the CLI).

    A check-accepted mutant that then fails to run (even with a clean error) raises
    AssertionError: ``check`` must be a gate.
    """
    from sim.cli.check import check_scenario_file
    from sim.cli.sweep import capped, run_points
    from sim.scenario import ScenarioError

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(time_limit_s)
    try:
        try:
            scenario = check_scenario_file(path)
        except ScenarioError:
            return "refused"
        try:
            run_points(capped(scenario, RUN_CAP, users=RUN_CAP), None, fast=True)
        except ScenarioError as err:
            raise AssertionError(f"check accepted {path} but run failed: {err}") from None
        return "ran"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
