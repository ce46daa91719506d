"""The Python API for scripts: ``sim.run(...)`` and ``sim.plan(...)`` results as DataFrames
(the optional ``pandas`` extra, a clear error without it), and the README's capacity-planning
script, executed as written."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

import sim

ROOT = Path(__file__).resolve().parents[1]


def _small_sweep(tmp_path: Path) -> sim.Scenario:
    data = yaml.safe_load((ROOT / "scenarios" / "seed_benchmark.yaml").read_text())
    data["workload"]["num_requests"] = 40
    data["sweep"]["values"] = [1, 3]
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    return sim.load_scenario(tmp_path / "s.yaml")


def test_run_results_are_the_points_and_a_tidy_frame(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    scenario = _small_sweep(tmp_path)
    results = sim.run(scenario)
    assert isinstance(results, list) and all(isinstance(p, sim.PointResult) for p in results)
    df = results.to_pandas()
    (field,) = list(scenario.sweep.points()[0])
    assert len(df) == len(results) == len(scenario.servers) * 2
    assert list(df.columns[:3]) == ["server", "engine", field]
    for (_, row), point in zip(df.iterrows(), results, strict=True):
        assert row["server"] == point.server and row[field] == point.sweep[field]
        assert row["output_throughput"] == point.metrics["output_throughput"]
    assert [r["server"] for r in results.rows()] == list(df["server"])


def test_a_missing_pandas_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = sim.RunResults()
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if not installed
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'servesim\[pandas\]'"):
        results.to_pandas()
    assert results.rows() == []  # plain rows need no pandas


def test_the_readme_capacity_planning_script_runs_and_agrees_with_the_plan(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    pytest.importorskip("pandas")
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"In a script \(this block is run by `tests/test_api.py`\):\n\n```python\n(.*?)```", readme, re.S)
    assert found, "the README's script block moved; keep its heading line"
    code = found.group(1)
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    monkeypatch.chdir(ROOT)
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)  # noqa: S102 - the README's own example
    result, table, best = ns["result"], ns["table"], ns["best"]
    out = capsys.readouterr().out
    assert f"cheapest: {best.name} x{best.figures['replicas']}" in out
    assert list(table.index) == [c.name for c in result.candidates]
    planned = table[table["status"] == "planned"]
    assert planned["usd_per_hour"].min() == table.loc[best.name, "usd_per_hour"] == best.figures["usd_per_hour"]
    for c in result.planned:
        assert table.loc[c.name, "replicas"] == c.figures["replicas"]
        assert table.loc[c.name, "usd_per_hour"] == pytest.approx(
            c.figures["replicas"] * c.gpus_per_replica * table.loc[c.name, "usd_per_gpu_hour"])
