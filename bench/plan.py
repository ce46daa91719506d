"""How long a capacity plan takes: prints the time and the number of simulations; asserts nothing.

Runs ``servesim plan`` on ``plans/azure_conv.yaml`` (Azure conversation trace at 2x; vLLM at
tensor parallel 1 and 2, and Ollama, on 3 GPUs: 9 candidates) serially (one process) and on a local Dask cluster of ``--workers``
workers, each in a fresh interpreter, and prints one line per run with the wall time, the
number of simulations, the cheapest plan, and whether both runs produced the same plan.

Usage::

    python bench/plan.py                  # serial, then a 2-worker local Dask cluster
    python bench/plan.py --workers 4
    python bench/plan.py --plan plans/chat_small.yaml
    python bench/plan.py --all            # no screening: every candidate simulated (worst case)
    python bench/plan.py --warm           # 8 of the plan's simulations: serial vs warm workers
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def run(plan: Path, jobs: int) -> tuple[float, dict]:
    """One ``servesim plan`` in a fresh interpreter: (wall seconds, plan.json)."""
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "sim", "plan", str(plan), "--out", out, "--jobs", str(jobs)],
                              capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - started
        if proc.returncode:
            sys.exit(proc.stderr)
        print(proc.stdout)
        return wall, json.loads((Path(out) / "plan.json").read_text())


def warm(plan: Path, workers: int, count: int = 8) -> None:
    """``count`` simulations of the plan's first candidate (one replica of 4, seeds 0..count-1):
    serially, then on a local Dask cluster whose workers already ran two (imports done)."""
    from sim.executor import DaskExecutor, SerialExecutor
    from sim.plan import load_plan
    from sim.plan.replicas import make_job, run_job, traffic_of

    spec = load_plan(plan)
    traffic = traffic_of(spec)
    jobs = [make_job(spec, traffic, spec.candidates.servers[0], spec.candidates.hardware[0],
                     traffic.per_replica(4), k) for k in range(count)]
    started = time.perf_counter()
    SerialExecutor().map(run_job, jobs)
    serial = time.perf_counter() - started
    with DaskExecutor(jobs=workers) as ex:
        ex.map(run_job, jobs[:workers])
        started = time.perf_counter()
        ex.map(run_job, jobs)
        dask = time.perf_counter() - started
    print(json.dumps({"simulations": count, "serial_s": round(serial, 2),
                      f"dask_{workers}_warm_workers_s": round(dask, 2)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", type=Path, default=ROOT / "plans" / "azure_conv.yaml")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--all", action="store_true", help="simulate every candidate (screen_margin 1e9)")
    parser.add_argument("--warm", action="store_true", help="time 8 simulations: serial vs warm Dask workers")
    args = parser.parse_args()
    if args.warm:
        warm(args.plan, args.workers)
        return
    if args.all:  # the same plan, with a copy beside it that screens nothing out
        doc = yaml.safe_load(args.plan.read_text())
        doc.setdefault("search", {})["screen_margin"] = 1e9
        doc["name"] += "-all"
        copy = args.plan.with_name(args.plan.stem + ".all.yaml")
        copy.write_text(yaml.safe_dump(doc, sort_keys=False))
        args.plan = copy
    docs = []
    for jobs in (1, args.workers):
        wall, doc = run(args.plan, jobs)
        docs.append(doc)
        label = "serial" if jobs == 1 else f"dask local cluster, {jobs} workers"
        print(json.dumps({"plan": doc["plan"]["name"], "executor": label, "wall_s": round(wall, 1),
                          "plan_s": round(doc["elapsed_s"], 1), "simulations": doc["simulations"],
                          "cheapest": doc["cheapest"]}))
    strip = [{k: v for k, v in d.items() if k != "elapsed_s"} for d in docs]
    print(json.dumps({"same_plan_serial_and_dask": strip[0] == strip[1]}))


if __name__ == "__main__":
    main()
