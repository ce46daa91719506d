"""`servesim validate`: shipped cases, failing bounds, bad files, known failures, p95 metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from sim.validation import CASES_DIR, load_case, run_case

ROOT = Path(__file__).resolve().parent.parent
CASE = CASES_DIR / "tr129_ollama_llama-3.2-1b.yaml"


def _validate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sim", "validate", *args], capture_output=True, text=True, cwd=ROOT)


def _copy(tmp_path: Path, edit) -> Path:  # noqa: ANN001 - a small callback
    data = yaml.safe_load(CASE.read_text())
    edit(data)
    path = tmp_path / "case.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_shipped_cases_pass_and_are_all_reported(tmp_path):
    proc = _validate("--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "validation.json").read_text())
    ids = {yaml.safe_load(f.read_text())["id"] for f in CASES_DIR.glob("*.yaml")}
    assert len(ids) >= 4
    assert {c["id"] for c in doc["cases"]} == ids
    for case in doc["cases"]:
        assert case["expectations"]
        for e in case["expectations"]:
            assert e["error"] == pytest.approx((e["predicted"] - e["measured"]) / e["measured"])
            assert e["ok"] == (abs(e["error"]) <= e["bound"])
    summary = doc["summary"]
    assert summary["num_failed"] == 0
    assert summary["median_abs_error_throughput"] is not None
    assert summary["median_abs_error_p99_latency"] is not None
    assert (tmp_path / "validation.png").stat().st_size > 0
    assert "median |error|" in proc.stdout


def test_a_bound_the_prediction_cannot_meet_fails_the_run(tmp_path):
    def tenfold(data):
        data["expect"][0]["measured"] *= 10

    proc = _validate(str(_copy(tmp_path, tenfold)))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL" in proc.stdout


def test_a_known_failure_that_passes_fails_the_run(tmp_path):
    def mark(data):
        data["expect"][0]["known_failure"] = "pretend it misses"

    proc = _validate(str(_copy(tmp_path, mark)))
    assert proc.returncode == 1
    assert "XPASS" in proc.stdout


def test_a_known_failure_that_fails_is_reported_not_fatal(tmp_path):
    def mark(data):
        data["expect"][0]["measured"] *= 10
        data["expect"][0]["known_failure"] = "the source contradicts an assumption"

    proc = _validate(str(_copy(tmp_path, mark)))
    assert proc.returncode == 0, proc.stdout
    assert "XFAIL" in proc.stdout


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d.pop("source"), "source"),
        (lambda d: d["expect"][0].update(metric="p97_ttft_ms", sweep={"workload.arrival.users": 1}),
         "expect.0.metric"),
        (lambda d: d["expect"][0].update(bound=-1), "expect.0.bound"),
        (lambda d: d["expect"][0]["metric"]["ratio"]["numerator"].update(sweep={"workload.arrival.users": 3}),
         "expect.0.metric.ratio.numerator.sweep"),
        (lambda d: d["scenario"]["servers"][0].update(num_parallel=0), "servers.0"),
    ],
)
def test_a_bad_case_file_gives_one_clear_error(tmp_path, edit, field):
    path = _copy(tmp_path, edit)
    proc = _validate(str(path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert str(path.name) in proc.stderr and field in proc.stderr, proc.stderr


def test_missing_case_file(tmp_path):
    proc = _validate(str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2
    assert "nope.yaml" in proc.stderr and "Traceback" not in proc.stderr


def test_p95_ttft_of_a_serial_server_with_constant_passes(tmp_path):
    """One user, one slot, every pass 10 ms: each TTFT is the single prompt pass, 10 ms exactly;
    with 3 users each request first waits for the others' whole requests."""
    case = {
        "id": "constant", "source": "test", "credibility": "A",
        "scenario": {
            "name": "constant", "model": "llama-3.2-1b", "hardware": "rtx-4090",
            "workload": {"arrival": {"kind": "closed_loop", "users": 1}, "prompt_tokens": {"kind": "fixed", "value": 8},
                         "output_tokens": {"kind": "fixed", "value": 5}, "num_requests": 40, "warmup_requests": 5},
            "servers": [{"name": "s", "kind": "serial_decode", "parallel": 1,
                         "cost": {"kind": "constant", "step_s": 0.01}}],
            "sweep": {"path": "workload.arrival.users", "values": [1, 3]},
        },
        "expect": [
            {"sweep": {"workload.arrival.users": 1}, "metric": "p95_ttft_ms", "measured": 10.0, "bound": 1e-6},
            {"sweep": {"workload.arrival.users": 1}, "metric": "output_throughput_per_user", "measured": 100.0,
             "bound": 0.05},
            # 3 users: a request waits for the 2 requests ahead of it (5 passes each), then its prompt pass.
            {"sweep": {"workload.arrival.users": 3}, "metric": "p95_ttft_ms", "measured": 110.0, "bound": 1e-6},
        ],
    }
    path = tmp_path / "constant.yaml"
    path.write_text(yaml.safe_dump(case))
    load_case(path)
    result = run_case(path)
    values = [e.predicted for e in result.expectations]
    assert values[0] == pytest.approx(10.0)
    assert values[1] == pytest.approx(100.0, rel=0.05)
    assert values[2] == pytest.approx(110.0)
    assert all(e.ok for e in result.expectations)
    assert np.isfinite(values).all()


def test_every_expectation_counts_in_the_per_engine_table_with_its_known_failures(tmp_path):
    """Each expectation lands in one engine x metric group (steady-window TTFT percentiles with the
    whole-run ones, none dropped), and the groups count their known failures."""
    from sim.validation.run import by_engine, metric_group

    assert metric_group("steady.p95_ttft_ms") == metric_group("p95_ttft_ms") == "TTFT p95/p99"
    proc = _validate("--out", str(tmp_path))
    doc = json.loads((tmp_path / "validation.json").read_text())
    expectations = [e for c in doc["cases"] for e in c["expectations"]]
    table = doc["summary"]["by_engine"]
    assert sum(cell["n"] for cells in table.values() for cell in cells.values()) == len(expectations)
    assert sum(cell["known_failures"] for cells in table.values() for cell in cells.values()) == sum(
        e["status"] == "XFAIL" for e in expectations)
    assert by_engine([]) == {}
    assert "XFAIL" in proc.stdout.split("by engine and metric")[1]
    # the same table over the published cases alone: exactly the expectations of cases whose source is a URL
    published = doc["summary"]["by_engine_published"]
    theirs = [e for c in doc["cases"] if c["published"] for e in c["expectations"]]
    assert all(c["published"] == c["source"].startswith("https://") for c in doc["cases"])
    assert 0 < sum(cell["n"] for cells in published.values() for cell in cells.values()) == len(theirs) < len(expectations)
    assert "published cases alone" in proc.stdout


def test_a_case_with_speed_noise_is_predicted_as_the_median_over_five_seeds(tmp_path):
    """Each run with speed noise is one draw; the prediction is the median over seeds 0-4 of the
    case's scenario, and a noiseless case runs once."""
    from sim.scenario import parse_scenario
    from sim.simulation import run

    scenario = {
        "name": "noisy", "model": "llama-3.2-1b", "hardware": "rtx-4090",
        "workload": {"arrival": {"kind": "closed_loop", "users": 2}, "prompt_tokens": {"kind": "fixed", "value": 8},
                     "output_tokens": {"kind": "fixed", "value": 50}, "num_requests": 30},
        "servers": [{"name": "s", "kind": "serial_decode", "parallel": 1, "cost": {"kind": "constant", "step_s": 0.01},
                     "speed_noise": {"cv": 0.2, "correlation_s": 0.2}}],
    }
    case = {"id": "noisy", "source": "test", "credibility": "A", "scenario": scenario,
            "expect": [{"metric": "p99_e2el_ms", "measured": 1000.0, "bound": 10.0}]}
    path = tmp_path / "noisy.yaml"
    path.write_text(yaml.safe_dump(case))
    result = run_case(path)
    draws = [run(parse_scenario({**scenario, "seed": k}))[0].metrics["p99_e2el_ms"] for k in range(5)]
    assert len(set(draws)) == 5  # the seeds give different draws
    assert result.replications == 5
    assert result.expectations[0].predicted == pytest.approx(float(np.median(draws)), rel=1e-12)
    scenario["servers"][0]["speed_noise"] = {"profile": "none"}
    path.write_text(yaml.safe_dump(case))
    assert run_case(path).replications == 1
    # a fleet whose replicas have noise counts too (the fleet's own notes do not carry it)
    scenario["servers"][0].update(speed_noise={"cv": 0.2}, replicas=2, router={"kind": "round_robin"})
    path.write_text(yaml.safe_dump(case))
    assert run_case(path).replications == 5
