"""No silent defaults: the cost profile each server used (and why) is recorded and printed, an
unnamed Hugging Face config asks for a name, and closed-loop users start at seeded offsets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from sim.cli import app
from sim.profiles import profile_kind
from sim.scenario import ScenarioError, load_scenario, parse_scenario
from sim.simulation import run_server, scenario_workload
from sim.workload import generate_workload

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "scenarios" / "seed_benchmark.yaml"
KINDS = {"fitted group", "class prior (fitted over a hardware class)", "hand prior", "user profile", "none"}


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").rglob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_server_records_its_cost_profile_and_why(path: Path) -> None:
    from sim.simulation import resolve_servers

    for server in resolve_servers(load_scenario(path)):
        notes = server.notes
        assert notes["cost_profile_kind"] in KINDS
        assert notes["cost_profile"] == (server.profile.id if server.profile else "-")
        assert notes["cost_profile_kind"] == (profile_kind(server.profile.id) if server.profile else "none")
        assert len(str(notes["cost_profile_reason"])) > 20


def test_run_prints_and_saves_the_profile_of_each_server(tmp_path: Path) -> None:
    data = yaml.safe_load(SEED.read_text())
    data["workload"]["num_requests"] = 20
    data["sweep"]["values"] = [1]
    data["servers"][1]["cost"] = {"kind": "constant", "step_s": 0.01}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "cost profiles" in text
    assert "vllm: prior-vllm-gpu (hand prior: the most specific profile for vllm on rtx-4090" in text
    assert "ollama: - (none: the scenario gives cost: {kind: constant})" in text
    assert "llama.cpp: fitted-llama.cpp-rtx-4090-llama-3.1-8b-q4_k_m (fitted group" in text
    notes = json.loads((tmp_path / "o" / "results.json").read_text())["notes"]
    assert {n["cost_profile_kind"] for n in notes.values()} == {"hand prior", "none", "fitted group"}


def test_a_named_profile_and_overrides_say_so() -> None:
    data = yaml.safe_load(SEED.read_text())
    data["servers"] = [{"engine": "vllm", "quantization": "awq", "max_model_len": 8192,
                        "cost": {"kind": "roofline", "profile": "prior-vllm-gpu", "step_overhead_s": 0.002}}]
    notes = run_server(parse_scenario({**data, "sweep": None}), 0).notes
    assert "named by the scenario (cost.profile: prior-vllm-gpu)" in notes["cost_profile_reason"]
    assert "overridden by the scenario: step_overhead_s" in notes["cost_profile_reason"]


def test_an_hf_config_without_a_name_asks_for_an_id(tmp_path: Path) -> None:
    from tests.test_catalog import LLAMA_3_1_8B_CONFIG

    (tmp_path / "config.json").write_text(json.dumps(LLAMA_3_1_8B_CONFIG))
    data = yaml.safe_load(SEED.read_text())
    data["model"] = {"hf_config": "config.json"}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ScenarioError, match=r"no _name_or_path .* give it an id, e\.g\. model: \{hf_config: config.json, id:"):
        scenario_workload(load_scenario(tmp_path / "s.yaml"))
    data["model"]["id"] = "llama-3.1-8b"
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    from sim.simulation import resolve_servers

    with_id = resolve_servers(load_scenario(tmp_path / "s.yaml"))
    catalog = resolve_servers(load_scenario(SEED))
    assert [s.profile.id for s in with_id if s.profile] == [s.profile.id for s in catalog if s.profile]


def _closed(**arrival: object) -> object:
    data = yaml.safe_load(SEED.read_text())
    data["workload"]["arrival"].update(arrival)
    return parse_scenario(data).workload


def test_closed_loop_users_start_at_seeded_offsets_not_in_lock_step() -> None:
    w = _closed(users=50)
    a, b = generate_workload(w, 0), generate_workload(w, 0)
    assert a.start_s is not None and np.array_equal(a.start_s, b.start_s)  # same seed, same offsets
    assert a.start_s.size == 50 and np.unique(a.start_s).size == 50
    assert 0 <= a.start_s.min() and a.start_s.max() < 1.0  # uniform on [0, start_spread_s = 1 s)
    assert not np.array_equal(generate_workload(w, 1).start_s, a.start_s)
    wide = generate_workload(_closed(users=50, start_spread_s=10.0), 0).start_s
    assert np.allclose(wide, 10 * a.start_s)  # the same uniform draws, scaled
    # the offsets come from the arrivals stream, which a closed loop did not use: lengths unchanged
    together = generate_workload(_closed(users=50, start_spread_s=0), 0)
    assert together.start_s is None
    assert np.array_equal(together.prompt_tokens, a.prompt_tokens)
    assert np.array_equal(together.output_tokens, a.output_tokens)
    assert generate_workload(_closed(users=50, ramp_up_s=5.0), 0).start_s is None  # a ramp is a ramp


def test_users_started_together_stay_in_step_and_staggered_ones_do_not() -> None:
    # Four users, four slots, fixed lengths, constant pass cost: started together every request
    # of a round waits the same; with seeded offsets the first requests arrive apart.
    def ttfts(spread: float) -> np.ndarray:
        data = yaml.safe_load(SEED.read_text())
        data["workload"] = {"arrival": {"kind": "closed_loop", "users": 4, "start_spread_s": spread},
                            "prompt_tokens": {"kind": "fixed", "value": 16}, "output_tokens": {"kind": "fixed", "value": 8},
                            "num_requests": 40}
        data["servers"] = [{"kind": "single_queue", "num_parallel": 2, "cost": {"kind": "constant", "step_s": 0.01}}]
        data.pop("sweep")
        rec = run_server(parse_scenario(data)).recorder
        return rec.first_token_s - rec.arrival_s

    assert np.unique(np.round(ttfts(0.0), 9)).size <= 2
    assert np.unique(np.round(ttfts(1.0), 9)).size > 2


def test_reference_differs_from_fast_forward_only_where_the_readme_says() -> None:
    # README, --reference: every metric but the windowed ITL statistics agrees to float rounding;
    # the ITL statistics over the whole run (no window) agree to the float32 storage of the gaps.
    from sim.metrics import itl_stats
    from sim.scenario import with_override

    sc = with_override(with_override(load_scenario(SEED), "workload.arrival.users", 5), "workload.num_requests", 300)
    fast, ref = run_server(sc, 0, fast=True), run_server(sc, 0, fast=False)
    for key, a in fast.metrics.items():
        b = ref.metrics[key]
        if isinstance(a, float) and "itl" not in key and not (np.isnan(a) and np.isnan(b)):
            assert a == pytest.approx(b, rel=1e-9, abs=1e-12), key
    whole = [itl_stats(*(c.astype(float) for c in r.recorder.itl_columns()[1:])) for r in (fast, ref)]
    for key in whole[0]:
        assert whole[0][key] == pytest.approx(whole[1][key], rel=1e-6), key
