"""Bench files: servesim writes what ``vllm bench serve`` writes, and reads both back.

The fixture ``tests/data/vllm_bench_0.12_layout.json`` is laid out as vLLM 0.12 writes a
``--save-result --save-detailed`` file (see tests/data/README.md); the files servesim writes must
carry every one of its keys, in the same order, with the point's own traffic, and read back as a
``vllm_bench`` trace with the simulated requests' lengths.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sim.requests import Status
from sim.scenario import with_override
from sim.simulation import run
from sim.traces import read_trace
from tests.helpers import tiny_scenario
from tests.vllm_reference import vllm_peaks

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "vllm_bench_0.12_layout.json"
USERS = [3, 12]


def _scenario():
    # a closed loop of users against a small vLLM-like server with a client timeout: the larger
    # user count makes some requests time out, so failures and wasted tokens are exercised
    return tiny_scenario(
        {"kind": "paged_batching", "num_kv_blocks": 120, "block_size": 16, "max_num_seqs": 4},
        step_s=0.05, arrival={"kind": "closed_loop", "users": 3}, num_requests=60, timeout_s=6.0,
        prompt={"kind": "uniform", "low": 20, "high": 200}, output={"kind": "uniform", "low": 5, "high": 60},
        sweep={"path": "workload.arrival.users", "values": USERS},
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    tmp = tmp_path_factory.mktemp("bench")
    scenario = _scenario()
    path = tmp / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario.model_dump(mode="json", exclude_none=True)))
    out = tmp / "out"
    proc = subprocess.run([sys.executable, "-m", "sim", "run", str(path), "--out", str(out)],
                          check=False, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return out, run(scenario)


def _bench(out: Path, users: int) -> dict:
    return json.loads((out / "bench" / f"paged_batching_users{users}.json").read_text())


def test_fixture_reads_as_a_vllm_bench_trace() -> None:
    trace = read_trace(FIXTURE)
    doc = json.loads(FIXTURE.read_text())
    ok = [not e for e in doc["errors"]]
    assert trace.format == "vllm_bench"
    assert trace.prompt_tokens.tolist() == [p for p, k in zip(doc["input_lens"], ok, strict=True) if k]
    assert trace.output_tokens.tolist() == [o for o, k in zip(doc["output_lens"], ok, strict=True) if k]
    assert trace.metadata["max_concurrency"] == doc["max_concurrency"]
    assert trace.metadata["request_rate"] == doc["request_rate"]


def test_written_files_carry_every_key_vllm_writes_in_its_order(written) -> None:
    out, _ = written
    reference = list(json.loads(FIXTURE.read_text()))
    for users in USERS:
        doc = _bench(out, users)
        keys = list(doc)
        assert set(reference) <= set(keys), set(reference) - set(keys)
        assert [k for k in keys if k in reference] == reference
        # every key outside vLLM's own set: the percentiles servesim adds, and one servesim key
        extra = [k for k in keys if k not in reference]
        assert all(k.startswith(("p90_", "p95_", "p99_", "std_", "mean_", "median_")) or k == "servesim" for k in extra)
        assert [k for k in keys if not k.endswith("_ms")][-1] == "servesim"


def test_each_file_has_its_points_own_traffic_and_a_real_date(written) -> None:
    out, _ = written
    for users in USERS:
        doc = _bench(out, users)
        assert doc["max_concurrency"] == users and doc["request_rate"] == "inf" and doc["burstiness"] == 1.0
        when = dt.datetime.strptime(doc["date"], "%Y%m%d-%H%M%S")
        assert abs((dt.datetime.now() - when).total_seconds()) < 3600
        assert dt.datetime.fromisoformat(doc["servesim"]["date_iso"]).tzinfo is not None
        own = doc["servesim"]
        for key in ("cost_profile", "engine", "steady", "wasted_output_tokens", "failures", "sweep"):
            assert key in own
        assert own["sweep"] == {"workload.arrival.users": users}
        assert own["steady"]["window_end_s"] > own["steady"]["window_start_s"]


def test_bench_file_reads_back_with_the_simulated_lengths(written) -> None:
    out, results = written
    for result in results:
        users = result.sweep["workload.arrival.users"]
        rec = result.recorder
        ok = rec.status == Status.COMPLETED
        trace = read_trace(out / "bench" / f"paged_batching_users{users}.json", "vllm_bench")
        assert trace.prompt_tokens.tolist() == rec.prompt_tokens[ok].tolist()
        assert trace.output_tokens.tolist() == rec.generated[ok].tolist()


def test_failures_are_listed_and_counted_as_vllm_does(written) -> None:
    out, results = written
    timed_out = 0
    for result in results:
        m = result.metrics
        doc = _bench(out, result.sweep["workload.arrival.users"])
        failed = [i for i, e in enumerate(doc["errors"]) if e]
        assert len(failed) == doc["failed"] == m["failed"]
        assert all(doc["output_lens"][i] == 0 and doc["itls"][i] == [] for i in failed)
        assert sum(doc["output_lens"]) == doc["total_output_tokens"]
        assert doc["output_throughput"] == doc["total_output_tokens"] / doc["duration"]
        assert doc["servesim"]["wasted_output_tokens"] == m["wasted_output_tokens"]
        timed_out += m["timeouts"]
    assert timed_out > 0  # the scenario does exercise failures


def test_peaks_equal_vllms_loop_over_the_written_lists(written) -> None:
    out, results = written
    for result in results:
        doc = _bench(out, result.sweep["workload.arrival.users"])
        rec = result.recorder
        ok = [i for i, e in enumerate(doc["errors"]) if not e]
        start = rec.arrival_s[ok].tolist()
        latency = (rec.finish_s[ok] - rec.arrival_s[ok]).tolist()
        peaks = vllm_peaks(start, [doc["ttfts"][i] for i in ok], [doc["itls"][i] for i in ok], latency)
        assert peaks == (doc["max_output_tokens_per_s"], doc["max_concurrent_requests"])
        assert peaks == (result.metrics["max_output_tokens_per_s"], result.metrics["max_concurrent_requests"])


def test_open_loop_traffic_keys_follow_the_swept_rate() -> None:
    from sim.results.bench import traffic

    base = tiny_scenario({"kind": "paged_batching", "num_kv_blocks": 40, "block_size": 4},
                         arrival={"kind": "gamma", "rate_per_s": 2.0, "burstiness": 0.5})
    for rate in (1.0, 8.0):
        point = with_override(base, "workload.arrival.rate_per_s", rate)
        assert traffic(point) == {"request_rate": rate, "burstiness": 0.5, "max_concurrency": None}


def test_a_point_without_its_requests_is_written_as_without_save_detailed(written) -> None:
    from sim.results.bench import DETAIL_KEY, point_bench

    out, results = written
    result = results[0]
    row = {**result.row(), "notes": result.notes}
    assert DETAIL_KEY not in row
    point = with_override(_scenario(), "workload.arrival.users", result.sweep["workload.arrival.users"])
    doc = point_bench(point, row, dt.datetime.now().astimezone())
    full = _bench(out, result.sweep["workload.arrival.users"])
    lists = {"input_lens", "output_lens", "ttfts", "itls", "generated_texts", "errors"}
    assert set(full) - set(doc) == lists
    assert all(doc[k] == full[k] for k in doc if k not in ("date", "servesim"))
