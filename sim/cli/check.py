"""``servesim check``: the gate a scenario passes before it runs.

For every sweep point it does what ``run`` does up to the first simulated event: validates the
fields, resolves the model, hardware and every server with the engines' own start-up refusals
(memory fit, vLLM's SchedulerConfig / CacheConfig rules, llama.cpp's slot contexts, Ollama's fit),
bounds the run's memory, and draws the point's workload, which opens and parses its trace and
length files. Files over ``SAMPLE_BYTES`` are parsed from their first ``SAMPLE_BYTES`` (the
header and the rows there) unless ``--full`` asks for a scan of every row; points of more than
``DRAW_REQUESTS`` requests are drawn with that many (the draws are the same code either way).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from sim.scenario import EmpiricalLength, Scenario, ScenarioError, TraceArrival, load_scenario
from sim.scenario.io import SCENARIO_SUFFIXES

__all__ = ["DRAW_REQUESTS", "SAMPLE_BYTES", "check_scenario", "check_scenario_file", "scenario_paths"]

SAMPLE_BYTES = 8 << 20
"""Files up to this size are read whole by check; bigger ones are sampled (``--full``: read whole)."""
DRAW_REQUESTS = 200_000
"""check draws at most this many requests per point (the rest only adds time)."""


def scenario_paths(items: list[Path]) -> list[Path]:
    """The scenario files named, folders searched for *.yaml, *.yml and *.toml.

    Raises:
        ScenarioError: A path does not exist, or a folder holds no scenario file.
    """
    out: list[Path] = []
    for item in items:
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.suffix in SCENARIO_SUFFIXES and p.is_file())
            if not found:
                raise ScenarioError(f"{item}: no scenario files (*.yaml, *.yml, *.toml) in this folder; check the path")
            out.extend(found)
        elif not item.exists():
            raise ScenarioError(f"{item}: no such file or folder; check the path")
        else:
            out.append(item)
    return out


def _data_files(scenario: Scenario) -> list[tuple[str, Path]]:
    """(field, path) of every trace and length file the workload reads."""
    w = scenario.workload
    files = []
    if isinstance(w.arrival, TraceArrival):
        files.append(("workload.arrival.path", scenario.resolve(w.arrival.path)))
    for name in ("prompt_tokens", "output_tokens"):
        spec = getattr(w, name)
        if isinstance(spec, EmpiricalLength):
            files.append((f"workload.{name}.path", scenario.resolve(spec.path)))
    return files


def _sample(path: Path, folder: Path) -> Path:
    """A copy of the first SAMPLE_BYTES of ``path`` cut at a line end (same name, in ``folder``)."""
    with open(path, "rb") as fh:
        head = fh.read(SAMPLE_BYTES)
    cut = head.rfind(b"\n")
    copy = folder / path.name
    copy.write_bytes(head[: cut + 1] if cut > 0 else head)
    return copy


def _is_one_json_document(path: Path) -> bool:
    """A JSON document (a vLLM bench result) cannot be sampled: its first line is not a whole row."""
    with open(path, "rb") as fh:
        first = fh.readline(1 << 16).strip()
    return first.startswith(b"{") and not first.endswith(b"}")


def _draw(scenario: Scenario) -> None:
    """Draw the point's workload as run would (at most DRAW_REQUESTS requests)."""
    from sim.cli.sweep import capped
    from sim.limits import request_count
    from sim.simulation import scenario_workload

    n, _ = request_count(scenario.workload, scenario.resolve)
    scenario_workload(scenario if n <= DRAW_REQUESTS else capped(scenario, DRAW_REQUESTS))


def check_scenario(scenario: Scenario, full: bool = False) -> None:
    """Everything ``run`` would refuse before its first event, for every sweep point."""
    from sim.simulation import resolve_servers, sweep_scenarios

    points = list(sweep_scenarios(scenario))
    for _, sc in points:
        resolve_servers(sc)
    big = [(field, path) for field, path in _data_files(scenario)
           if path.is_file() and path.stat().st_size > SAMPLE_BYTES and not _is_one_json_document(path)]
    if big and not full:
        with tempfile.TemporaryDirectory(prefix="servesim-check-") as tmp:
            samples: dict[str, Any] = {}
            for field, path in big:
                folder = Path(tmp) / str(len(samples))
                folder.mkdir()
                samples[str(path)] = _sample(path, folder)
            for _, sc in points:
                try:
                    _draw(_with_files(sc, samples))
                except ScenarioError as err:
                    message = str(err)
                    for real, copy in samples.items():
                        message = message.replace(str(copy), real)
                    raise ScenarioError(message + f" (in the first {SAMPLE_BYTES >> 20} MiB checked)") from None
        return
    for _, sc in points:
        _draw(sc)


def _with_files(scenario: Scenario, samples: dict[str, Path]) -> Scenario:
    """The scenario reading the sampled copies instead of the big files."""
    from sim.scenario import with_override

    w = scenario.workload
    if isinstance(w.arrival, TraceArrival) and str(scenario.resolve(w.arrival.path)) in samples:
        scenario = with_override(scenario, "workload.arrival.path", str(samples[str(scenario.resolve(w.arrival.path))]))
    for name in ("prompt_tokens", "output_tokens"):
        spec = getattr(scenario.workload, name)
        if isinstance(spec, EmpiricalLength) and str(scenario.resolve(spec.path)) in samples:
            scenario = with_override(scenario, f"workload.{name}.path", str(samples[str(scenario.resolve(spec.path))]))
    return scenario


def check_scenario_file(path: Path, full: bool = False) -> Scenario:
    """Load and check one scenario file; raises ScenarioError naming what is wrong."""
    scenario = load_scenario(path)
    check_scenario(scenario, full)
    return scenario
