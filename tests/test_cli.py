"""The seed benchmark through the command line, with the article's shape asserted as
consequences of the mechanisms (closed-loop Little's law, slots, continuous batching)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "scenarios" / "seed_benchmark.yaml"


@pytest.fixture(scope="module")
def seed_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, str]:
    out = tmp_path_factory.mktemp("seed")
    proc = subprocess.run([sys.executable, "-m", "sim", "run", str(SEED), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "results.json").read_text()), out, proc.stdout


def _point(doc: dict, server: str, users: int) -> dict:
    return next(p for p in doc["points"] if p["server"] == server and p["sweep"]["workload.arrival.users"] == users)


def test_outputs_are_written(seed_run) -> None:
    doc, out, stdout = seed_run
    assert len(doc["points"]) == 12
    assert "seed-benchmark" in stdout and "vllm" in stdout
    with (out / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 and "p99_e2el_ms" in rows[0]
    assert len(list((out / "bench").glob("*.json"))) == 12
    bench = json.loads(next((out / "bench").glob("vllm_users50.json")).read_text())
    for key in ("completed", "request_throughput", "output_throughput", "mean_ttft_ms", "p99_itl_ms", "median_tpot_ms"):
        assert key in bench
    for plot in ("output_throughput.png", "p99_ttft_ms.png", "p99_e2el_ms.png", "timeouts.png"):
        assert (out / plot).stat().st_size > 10_000


def test_one_user_engines_are_within_15_percent(seed_run) -> None:
    doc = seed_run[0]
    tput = [_point(doc, s, 1)["output_throughput"] for s in ("vllm", "ollama", "llama.cpp")]
    assert max(tput) / min(tput) < 1.15


def test_ollama_queue_grows_linearly_once_its_slots_are_full(seed_run) -> None:
    # 4 slots: above 4 users the throughput X is flat, so by Little's law W = N / X grows
    # linearly with the number of users N.
    doc = seed_run[0]
    x = {n: _point(doc, "ollama", n)["request_throughput"] for n in (5, 20, 50)}
    w = {n: _point(doc, "ollama", n)["mean_e2el_ms"] for n in (5, 20, 50)}
    assert max(x.values()) / min(x.values()) < 1.1
    assert w[50] / w[20] == pytest.approx(50 / 20, rel=0.2)
    assert _point(doc, "ollama", 5)["median_ttft_ms"] > 5 * _point(doc, "ollama", 1)["median_ttft_ms"]


def test_serial_llama_cpp_piles_up_until_requests_time_out(seed_run) -> None:
    doc = seed_run[0]
    timeout_ms = 30_000
    assert _point(doc, "llama.cpp", 20)["p99_e2el_ms"] > 0.8 * timeout_ms
    assert _point(doc, "llama.cpp", 50)["timeouts"] > 0


def test_vllm_at_50_users_is_several_times_the_others_with_p99_of_seconds(seed_run) -> None:
    doc = seed_run[0]
    vllm = _point(doc, "vllm", 50)
    for other in ("ollama", "llama.cpp"):
        assert vllm["output_throughput"] > 3 * _point(doc, other, 50)["output_throughput"]
    assert vllm["p99_e2el_ms"] < 10_000
    assert vllm["timeouts"] == 0


def test_set_override_and_bad_set() -> None:
    ok = subprocess.run([sys.executable, "-m", "sim", "run", str(SEED), "--set", "sweep.values=[2]",
                         "--set", "workload.num_requests=60"], capture_output=True, text=True, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, "-m", "sim", "run", str(SEED), "--set", "workload.num_requests=-1"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "num_requests" in bad.stderr and "Traceback" not in bad.stderr


def test_interrupted_sweep_resumes_from_saved_points(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "sim", "run", str(SEED), "--set", "workload.num_requests=60", "--out", str(tmp_path)]
    subprocess.run(args, check=True, capture_output=True, cwd=ROOT)
    saved = sorted((tmp_path / "points").glob("*.json"))
    assert len(saved) == 12
    first = json.loads((tmp_path / "results.json").read_text())
    saved[0].write_text(saved[0].read_text().replace('"completed": ', '"completed": 1000'))  # marker
    subprocess.run(args, check=True, capture_output=True, cwd=ROOT)
    again = json.loads((tmp_path / "results.json").read_text())
    assert sum(p["completed"] != q["completed"] for p, q in zip(first["points"], again["points"])) == 1


def test_parallel_sweep_gives_identical_rows(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "sim", "run", str(SEED), "--set", "workload.num_requests=80"]
    serial = subprocess.run([*base, "--out", str(tmp_path / "a")], capture_output=True, text=True, cwd=ROOT)
    parallel = subprocess.run([*base, "--jobs", "2", "--out", str(tmp_path / "b")], capture_output=True, text=True,
                              cwd=ROOT)
    assert serial.returncode == 0 and parallel.returncode == 0, parallel.stderr
    a = json.loads((tmp_path / "a" / "results.json").read_text())["points"]
    b = json.loads((tmp_path / "b" / "results.json").read_text())["points"]
    assert a == b


def test_grid_sweep_runs_through_the_cli(tmp_path: Path) -> None:
    """A grid sweep: one table row per server and grid point, a CSV column per swept field, the
    same rows as the one-field sweeps it is made of, and plots with a line per other field."""
    scenario = tmp_path / "grid.yaml"
    scenario.write_text(
        "name: grid\nmodel: llama-3.1-8b\nhardware: rtx-4090\n"
        "workload: {arrival: {kind: closed_loop, users: 1}, prompt_tokens: {kind: fixed, value: 64},\n"
        "           output_tokens: {kind: fixed, value: 16}, num_requests: 40}\n"
        "servers: [{engine: vllm, quantization: awq, max_model_len: 4096}]\n"
        "sweep: {grid: {workload.arrival.users: [1, 4], servers.vllm.max_num_seqs: [2, 8]}}\n"
    )
    grid = subprocess.run([sys.executable, "-m", "sim", "run", str(scenario), "--out", str(tmp_path / "g")],
                          capture_output=True, text=True, cwd=ROOT)
    assert grid.returncode == 0, grid.stderr
    with (tmp_path / "g" / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["sweep.workload.arrival.users"], r["sweep.servers.vllm.max_num_seqs"]) for r in rows] == [
        ("1", "2"), ("1", "8"), ("4", "2"), ("4", "8")]
    assert (tmp_path / "g" / "output_throughput.png").stat().st_size > 0
    one = subprocess.run([sys.executable, "-m", "sim", "run", str(scenario), "--set", "sweep=null",
                          "--set", "workload.arrival.users=4", "--set", "servers.vllm.max_num_seqs=2",
                          "--out", str(tmp_path / "one")], capture_output=True, text=True, cwd=ROOT)
    assert one.returncode == 0, one.stderr
    single = json.loads((tmp_path / "one" / "results.json").read_text())["points"][0]
    point = json.loads((tmp_path / "g" / "results.json").read_text())["points"][2]
    assert point["output_throughput"] == single["output_throughput"]
    assert point["p99_e2el_ms"] == single["p99_e2el_ms"]
