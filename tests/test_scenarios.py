"""Every shipped scenario loads and checks; every spec field is documented; bad files get
one clear error naming the file, the field and the fix (never a traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

import sim.scenario as scenario_module
from sim.scenario import ScenarioError, load_scenario, with_override
from sim.simulation import resolve_servers

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").rglob("*.yaml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_scenario_loads_and_resolves(path: Path) -> None:
    scenario = load_scenario(path)
    assert resolve_servers(scenario)


def test_every_spec_field_is_documented() -> None:
    specs = [obj for obj in vars(scenario_module).values()
             if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__.startswith("sim.scenario")]
    assert len(specs) > 15
    missing = [f"{spec.__name__}.{name}" for spec in specs for name, field in spec.model_fields.items()
               if not field.description]
    assert missing == []


BASE = """
name: bad
model: llama-3.1-8b
hardware: rtx-4090
workload:
  arrival: {kind: closed_loop, users: 4}
  prompt_tokens: {kind: fixed, value: 128}
  output_tokens: {kind: fixed, value: 64}
  num_requests: 50
servers:
  - {engine: vllm, quantization: awq, max_model_len: 8192}
"""


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("users: 4", "users: 4, thinktime: 1"), ["workload.arrival", "thinktime", "unknown field"]),
        (("users: 4", "users: four"), ["workload.arrival", "users", "integer"]),
        (("value: 128", "value: -3"), ["prompt_tokens", "greater than or equal to 1"]),
        (("engine: vllm,", "engine: tgi,"), ["servers.0", "engine: ollama | llama.cpp | vllm"]),
        (("model: llama-3.1-8b", "model: llama-3.1-70b"), ["servers.0", "do not fit", "quantize"]),
        (("max_model_len: 8192", "max_model_len: 131072"), ["servers.0", "max_model_len", "set max_model_len <="]),
        (("hardware: rtx-4090", "hardware: rtx-4090x"), ["hardware", "rtx-4090"]),
        (("  num_requests: 50\n", ""), ["workload", "num_requests"]),
    ],
    ids=["unknown-key", "wrong-type", "impossible-value", "unknown-engine", "model-too-big",
         "kv-too-small", "unknown-hardware", "missing-count"],
)
def test_bad_scenario_gets_a_clear_error(tmp_path: Path, edit: tuple[str, str], expected: list[str]) -> None:
    path = tmp_path / "bad.yaml"
    assert edit[0] in BASE
    path.write_text(BASE.replace(edit[0], edit[1]))
    proc = subprocess.run([sys.executable, "-m", "sim", "check", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    message = " ".join(proc.stderr.split())
    assert str(path.name) in message
    for fragment in expected:
        assert fragment in message, (fragment, message)


def test_override_revalidates() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "seed_benchmark.yaml")
    assert with_override(scenario, "servers.vllm.max_num_seqs", 8).servers[0].max_num_seqs == 8  # type: ignore[union-attr]
    with pytest.raises(ScenarioError, match="max_num_seqs"):
        with_override(scenario, "servers.vllm.max_num_seqs", 0)


def test_specs_are_frozen() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "seed_benchmark.yaml")
    with pytest.raises(Exception):  # noqa: B017
        scenario.name = "x"  # type: ignore[misc]


def test_cpu_threads_pick_the_profile_measured_with_them() -> None:
    from sim.profiles import select_profile

    picks = {t: select_profile("llama.cpp", "epyc-zen5-2c-vm", "cpu", "smollm2-135m", "f16", threads=t) for t in (1, 2)}
    assert picks[1].threads == 1 and picks[2].threads == 2
    assert picks[1].params != picks[2].params
