"""Sweeps that survive: atomic point files, a torn file reported and recomputed, a cache keyed by
the servesim code, the scenario and its cost profiles, resumed runs that say what they reused,
and ``--jobs`` workers that never outlive a killed parent."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sim.cli import app, points

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "scenarios" / "seed_benchmark.yaml"


def small(tmp_path: Path, requests: int = 40, users: list[int] | None = None) -> Path:
    data = yaml.safe_load(SEED.read_text())
    data["workload"]["num_requests"] = requests
    data["sweep"]["values"] = users or [1, 3]
    data["servers"] = data["servers"][:1]
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(scenario: Path, out: Path) -> str:
    result = CliRunner().invoke(app, ["run", str(scenario), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return "".join(result.output.split())  # rich wraps long paths: compare without whitespace


def test_a_resumed_run_says_what_it_reused_and_gives_the_same_rows(tmp_path: Path) -> None:
    scenario, out = small(tmp_path), tmp_path / "out"
    first = run(scenario, out)
    assert "resumed:" not in first
    rows = json.loads((out / "results.json").read_text())["points"]
    again = run(scenario, out)
    assert f"resumed:reused2of2pointssavedin{out / 'points'}" in again
    assert json.loads((out / "results.json").read_text())["points"] == rows
    assert not list((out / "points").glob("*.tmp"))  # atomic writes leave no temporary file


def test_a_torn_point_file_is_reported_and_recomputed(tmp_path: Path) -> None:
    scenario, out = small(tmp_path), tmp_path / "out"
    run(scenario, out)
    rows = json.loads((out / "results.json").read_text())["points"]
    torn = sorted((out / "points").glob("*.json"))[0]
    torn.write_bytes(torn.read_bytes()[: torn.stat().st_size // 2])
    text = run(scenario, out)
    assert f"warning:{torn}:notvalidJSON" in text and "recomputingthispoint" in text
    assert "reused1of2" in text
    assert json.loads((out / "results.json").read_text())["points"] == rows
    assert json.loads(torn.read_text())["server"] == "vllm"  # rewritten whole


def test_a_new_servesim_version_or_cost_profile_does_not_reuse_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scenario, out = small(tmp_path), tmp_path / "out"
    run(scenario, out)
    monkeypatch.setattr(points, "code_fingerprint", lambda: "9.9.9+other")
    assert "resumed:" not in run(scenario, out)
    assert len(list((out / "points").glob("*.json"))) == 4
    data = yaml.safe_load(scenario.read_text())  # another cost profile (same servesim)
    data["servers"][0]["cost"] = {"kind": "roofline", "profile": "prior-vllm-gpu", "step_overhead_s": 0.01}
    scenario.write_text(yaml.safe_dump(data))
    assert "resumed:" not in run(scenario, out)


def test_the_cache_key_covers_the_files_a_scenario_reads(tmp_path: Path) -> None:
    from sim.scenario import load_scenario
    from sim.simulation import resolve_servers

    table = tmp_path / "lengths.csv"
    table.write_text("num_prefill_tokens,num_decode_tokens\n10,5\n")
    data = yaml.safe_load(SEED.read_text())
    data["workload"]["prompt_tokens"] = {"kind": "empirical", "path": "lengths.csv"}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    sc = load_scenario(tmp_path / "s.yaml")
    key = points.point_key(sc, {}, "vllm", resolve_servers(sc)[0])
    table.write_text("num_prefill_tokens,num_decode_tokens\n11,5\n")
    assert points.point_key(sc, {}, "vllm", resolve_servers(sc)[0]) != key


def test_save_point_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    points.save_point(path, {"server": "a", "engine": "b", "sweep": {}})
    with pytest.raises(TypeError):
        points.save_point(path, {"server": object()})  # fails before the file is touched
    assert json.loads(path.read_text())["server"] == "a"
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]
    assert points.load_point(tmp_path / "none.json") == (None, None)
    path.write_text('{"x": 1}')
    assert points.load_point(path)[1] == "not a saved point (keys missing)"


def _children(pid: int) -> set[int]:
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_killing_the_parent_of_jobs_2_leaves_no_worker_after_5_s(tmp_path: Path, sig: signal.Signals) -> None:
    scenario = small(tmp_path, requests=400_000, users=[50, 51, 52, 53])
    parent = subprocess.Popen(
        [sys.executable, "-m", "sim", "run", str(scenario), "--jobs", "2", "--out", str(tmp_path / "out")],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 60
        workers: set[int] = set()
        while len(workers) < 2 and time.monotonic() < deadline and parent.poll() is None:
            time.sleep(0.1)
            workers = _children(parent.pid)
        assert len(workers) >= 2, "the workers never started"
        os.kill(parent.pid, sig)
        parent.wait(timeout=30)
        end = time.monotonic() + 5
        while any(_alive(w) for w in workers) and time.monotonic() < end:
            time.sleep(0.1)
        assert not [w for w in workers if _alive(w)], f"workers alive 5 s after {sig.name} of their parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        for w in _children(parent.pid):
            os.kill(w, signal.SIGKILL)


def test_the_version_in_the_cache_key_is_the_packages() -> None:
    import tomllib

    import sim

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert sim.__version__ == version
    assert points.code_fingerprint().startswith(version + "+")


def _points(out: Path) -> str:
    return json.dumps(json.loads((out / "results.json").read_text())["points"], sort_keys=True)


def test_run_on_a_dask_cluster_is_byte_identical_and_resumes(tmp_path: Path) -> None:
    """The same rows serially, with --jobs 2 (worker processes) and on a Dask cluster
    (--scheduler); on Dask every point is saved as it finishes, and a rerun reuses them."""
    distributed = pytest.importorskip("distributed")
    scenario = small(tmp_path, users=[1, 3, 5])
    run(scenario, tmp_path / "serial")
    jobs = CliRunner().invoke(app, ["run", str(scenario), "--jobs", "2", "--out", str(tmp_path / "jobs")])
    assert jobs.exit_code == 0, jobs.output
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        out = tmp_path / "dask"
        cli = ["run", str(scenario), "--scheduler", address, "--out", str(out)]
        first = CliRunner().invoke(app, cli)
        assert first.exit_code == 0, first.output
        assert _points(out) == _points(tmp_path / "serial") == _points(tmp_path / "jobs")
        saved = sorted((out / "points").glob("*.json"))
        assert len(saved) == 3 and not list((out / "points").glob("*.tmp"))
        saved[1].unlink()  # as if the run had died before this point came back
        again = CliRunner().invoke(app, cli)
        assert again.exit_code == 0, again.output
        assert "resumed:reused2of3" in "".join(again.output.split())
        assert _points(out) == _points(tmp_path / "serial") and saved[1].is_file()


def test_progress_counts_points_and_simulated_requests(tmp_path: Path) -> None:
    from sim.cli.sweep import run_points
    from sim.executor import SerialExecutor
    from sim.scenario import load_scenario

    seen: list[tuple[int, int, int]] = []
    rows = run_points(load_scenario(small(tmp_path)), None, fast=True, executor=SerialExecutor(),
                      progress=lambda *a: seen.append(a))
    assert seen[0] == (0, 2, 0) and seen[-1] == (2, 2, sum(r["arrived"] for r in rows))
    assert seen[1][2] == rows[0]["arrived"] > 0


def test_an_unreachable_scheduler_is_a_clean_error(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = CliRunner().invoke(app, ["run", str(small(tmp_path)), "--scheduler", f"tcp://127.0.0.1:{port}"])
    assert result.exit_code == 2 and "cannot reach the Dask scheduler" in result.output
    assert "Traceback" not in result.output
