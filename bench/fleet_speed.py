"""Does a fleet keep the per-request cost class? Prints 1 M requests over 16 replicas against
1 M requests on one replica at the same per-replica load, and the ratio (issue 18 target <= 1.5x).

Both cases are paged_batching (vLLM knobs) on llama-3.1-8b / h100-sxm with ShareGPT lengths,
like ``bench/speed.py``: the one-replica rate is ``--load`` times the saturated rate measured by
a short closed loop; the fleet gets 16x that rate behind ``--router`` (default round_robin). Each
case runs in a fresh interpreter (so neither inherits the other's heap).

Usage::

    python bench/fleet_speed.py                          # 1 M requests, round_robin
    python bench/fleet_speed.py --requests 200000 --router power_of_two --replicas 8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from speed import calibrate, scenario_data

ARCH = "paged_batching"


def one(spec: dict[str, Any]) -> dict[str, Any]:
    import sim
    from sim.scenario import parse_scenario
    from sim.simulation import resolve_servers, run_server, scenario_workload

    data = scenario_data(ARCH, {"kind": "poisson", "rate_per_s": spec["rate_per_s"]}, spec["requests"], spec["seed"])
    if spec["replicas"] > 1:
        data["servers"][0] = {**data["servers"][0], "replicas": spec["replicas"], "router": {"kind": spec["router"]}}
    scenario = parse_scenario(data)
    resolve_servers(scenario)
    workload = scenario_workload(scenario)
    t0 = time.perf_counter()
    result = run_server(scenario, 0, workload=workload)
    wall = time.perf_counter() - t0
    return {"replicas": spec["replicas"], "router": spec["router"] if spec["replicas"] > 1 else None,
            "requests": spec["requests"], "rate_per_s": round(spec["rate_per_s"], 3),
            "core": "compiled" if sim.CORE.compiled else "pure", "wall_s": round(wall, 3),
            "requests_per_wall_s": round(spec["requests"] / wall, 1),
            "completed": result.metrics["completed"], "mean_ttft_ms": round(result.metrics["mean_ttft_ms"], 2),
            "p99_e2el_ms": round(result.metrics["p99_e2el_ms"], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--replicas", type=int, default=16)
    ap.add_argument("--router", default="round_robin")
    ap.add_argument("--load", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--calibration-requests", type=int, default=3000)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(json.loads(args.one))))
        return
    rate = args.load * calibrate(ARCH, args.calibration_requests, args.seed)["saturation_rps"]
    rows = []
    for replicas in (1, args.replicas):
        spec = {"replicas": replicas, "router": args.router, "requests": args.requests,
                "rate_per_s": rate * replicas, "seed": args.seed}
        out = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], check=True,
                             capture_output=True, text=True, cwd=REPO).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"fleet_over_single_wall_ratio": round(rows[1]["wall_s"] / rows[0]["wall_s"], 3),
                      "target": 1.5}))


if __name__ == "__main__":
    main()
