"""Grid sweeps: several fields at once, as a product or zipped, and their tidy table."""

from __future__ import annotations

import pytest

from sim.results.tidy import tidy_rows
from sim.scenario import ScenarioError, parse_scenario
from sim.simulation import run, sweep_scenarios

BASE = {
    "name": "grid", "model": "llama-3.1-8b", "hardware": "l40s",
    "workload": {"arrival": {"kind": "closed_loop", "users": 2}, "prompt_tokens": {"kind": "fixed", "value": 64},
                 "output_tokens": {"kind": "fixed", "value": 16}, "num_requests": 40},
    "servers": [{"name": "vllm", "engine": "vllm", "max_model_len": 4096}],
}


def scenario(sweep):
    return parse_scenario({**BASE, "sweep": sweep})


def test_product_runs_every_combination_last_field_fastest():
    sc = scenario({"grid": {"workload.arrival.users": [1, 4], "servers.vllm.max_num_seqs": [8, 64, 128]}})
    points = [(p, s) for p, s in sweep_scenarios(sc)]
    assert [p for p, _ in points] == [{"workload.arrival.users": u, "servers.vllm.max_num_seqs": m}
                                      for u in (1, 4) for m in (8, 64, 128)]
    for p, s in points:  # every field of the point is applied
        assert s.workload.arrival.users == p["workload.arrival.users"]
        assert s.servers[0].max_num_seqs == p["servers.vllm.max_num_seqs"]


def test_zip_pairs_the_lists():
    sc = scenario({"grid": {"workload.arrival.users": [1, 4], "hardware": ["l40s", "h100-sxm"]}, "mode": "zip"})
    assert [(s.workload.arrival.users, s.hardware) for _, s in sweep_scenarios(sc)] == [(1, "l40s"), (4, "h100-sxm")]


def test_a_one_field_grid_is_the_one_field_sweep():
    one = run(scenario({"path": "workload.arrival.users", "values": [1, 3]}))
    grid = run(scenario({"grid": {"workload.arrival.users": [1, 3]}}))
    assert [r.row() for r in one] == [r.row() for r in grid]


def test_tidy_table_has_a_column_per_field():
    results = run(scenario({"grid": {"workload.arrival.users": [1, 2], "servers.vllm.max_num_seqs": [4, 8]}}))
    table = tidy_rows([r.row() for r in results])
    assert len(table) == 4
    assert list(table[0])[:4] == ["server", "engine", "workload.arrival.users", "servers.vllm.max_num_seqs"]
    assert {(t["workload.arrival.users"], t["servers.vllm.max_num_seqs"]) for t in table} == {(1, 4), (1, 8), (2, 4), (2, 8)}
    assert all("output_throughput" in t for t in table)


@pytest.mark.parametrize("sweep, message", [
    ({"grid": {"workload.arrival.users": [1, 2], "hardware": ["l40s"]}, "mode": "zip"}, "equal length"),
    ({"path": "workload.arrival.users", "values": [1], "grid": {"hardware": ["l40s"]}}, "either path and values, or grid"),
    ({"path": "workload.arrival.users"}, "both path and values"),
    ({"grid": {"hardware": []}}, "at least one value"),
])
def test_bad_grids_get_a_clean_error(sweep, message):
    with pytest.raises(ScenarioError, match=message):
        scenario(sweep)


def test_points_as_executor_tasks_give_the_same_results():
    from sim.executor import SerialExecutor

    sc = scenario({"grid": {"workload.arrival.users": [1, 3]}})
    sc = sc.model_copy(update={"servers": [*sc.servers, parse_scenario({**BASE, "servers": [
        {"name": "ollama", "engine": "ollama", "version": "0.5.7"}]}).servers[0]]})
    seen = []
    tasks = run(sc, executor=SerialExecutor(), progress=seen.append)
    assert [r.row() for r in tasks] == [r.row() for r in run(sc)]
    assert len(seen) == 4
