"""How far ``--reference`` (one pass at a time) is from fast-forwarding, over every point of every
shipped scenario: the largest relative difference of each metric (a script, not a test).

    PYTHONPATH=. python bench/reference_diff.py
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from sim.scenario import load_scenario
from sim.simulation import run

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    worst: dict[str, tuple[float, str, str, dict, float, float]] = {}
    exact = total = 0
    for path in sorted((ROOT / "scenarios").rglob("*.yaml")):
        start = time.time()
        scenario = load_scenario(path)
        for fast, ref in zip(run(scenario, fast=True), run(scenario, fast=False), strict=True):
            for key, a in fast.metrics.items():
                b = ref.metrics[key]
                if isinstance(a, bool) or not isinstance(a, int | float):
                    continue
                total += 1
                if a == b or (math.isnan(a) and math.isnan(b)):
                    exact += 1
                    continue
                rel = abs(a - b) / max(abs(a), abs(b))
                if rel > worst.get(key, (0.0,))[0]:
                    worst[key] = (rel, path.name, fast.server, fast.sweep, a, b)
        print(f"{path.relative_to(ROOT)}: {time.time() - start:.1f} s", flush=True)
    print(f"{exact} of {total} metric values bit-identical; largest relative differences:")
    for key, (rel, name, server, sweep, a, b) in sorted(worst.items(), key=lambda kv: -kv[1][0]):
        print(f"  {key:24s} {rel:.2e}  {name} {server} {sweep}: fast {a:.10g}, reference {b:.10g}")


if __name__ == "__main__":
    main()
