"""Executors: serial, a local Dask cluster and a real scheduler with two workers give
byte-identical plan simulations per seed."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sim.executor import DaskExecutor, SerialExecutor, make_executor
from sim.plan import parse_plan
from sim.plan.replicas import make_job, run_job, traffic_of

distributed = pytest.importorskip("distributed")
ROOT = Path(__file__).resolve().parents[1]


def _jobs():
    spec = parse_plan({
        "name": "dask", "seed": 5, "model": "llama-3.1-8b",
        "traffic": {"workload": {"arrival": {"kind": "poisson", "rate_per_s": 8},
                                 "prompt_tokens": {"kind": "uniform", "low": 32, "high": 256},
                                 "output_tokens": {"kind": "uniform", "low": 8, "high": 64},
                                 "num_requests": 120}},
        "slo": {"ttft_ms": {"p99": 1000}},
        "candidates": {"servers": [{"name": "vllm", "engine": "vllm", "max_model_len": 4096},
                                   {"name": "ollama", "engine": "ollama", "version": "0.5.7"}],
                       "hardware": ["l40s"]},
    })
    traffic = traffic_of(spec)
    return [make_job(spec, traffic, server, "l40s", load, spec.seed + k)
            for server in spec.candidates.servers for load in (2.0, 8.0) for k in range(2)]


def _dump(results) -> str:
    return json.dumps(results, sort_keys=True, default=float)


@pytest.fixture(scope="module")
def serial():
    return _dump(SerialExecutor().map(run_job, _jobs()))


def test_make_executor_picks_serial_for_one_job():
    assert isinstance(make_executor(1), SerialExecutor)


def test_local_cluster_is_identical_and_listens_on_localhost(serial):
    seen = []
    with DaskExecutor(jobs=2) as ex:
        assert ex.workers == 2
        assert ex.client.scheduler.address.startswith("tcp://127.0.0.1:")
        assert all(addr.startswith("tcp://127.0.0.1:") for addr in ex.client.nthreads())
        out = ex.map(run_job, _jobs(), done=lambda i, r: seen.append(i))
    assert _dump(out) == serial
    assert sorted(seen) == list(range(len(out)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_scheduler_and_two_workers(serial, tmp_path):
    dask = shutil.which("dask", path=str(Path(sys.executable).parent)) or shutil.which("dask")
    if dask is None:
        pytest.skip("the dask command is not installed")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", ":0", "--no-show"],
                              env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(2):
            procs.append(subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--host", "127.0.0.1",
                                           "--no-dashboard", "--local-directory", str(tmp_path)],
                                          env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with DaskExecutor(scheduler=address, timeout_s=60) as ex:
            ex.client.wait_for_workers(2, timeout=90)
            assert ex.workers == 2
            out = ex.map(run_job, _jobs())
        assert _dump(out) == serial
    finally:
        for p in reversed(procs):
            p.terminate()
        deadline = time.monotonic() + 20
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
