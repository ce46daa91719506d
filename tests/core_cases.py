"""Every result column of a set of runs, for comparing the compiled and the pure-Python core.

``python -m tests.core_cases OUT.npz`` writes them (``tests/test_core.py`` runs it with
``SERVESIM_PURE_PYTHON=1``); :func:`results` computes them in the calling process.

The runs: every shipped scenario (all servers, all sweep points: the seed benchmark, the
trace replays with prefix caching, the what-ifs), and small synthetic runs on roofline costs
that reach the rarer paths (preemption, vLLM V0 prompt passes, context shifts, a unified KV
pool, a full Ollama queue, client timeouts, the one-pass-at-a-time reference loop).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from sim.scenario import load_scenario
from sim.simulation import PointResult, run, run_server
from tests.helpers import tiny_scenario

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ("arrival_s", "started_s", "first_token_s", "finish_s", "prompt_tokens", "output_tokens",
           "generated", "status", "cached_tokens", "num_preemptions")
ITL = ("time", "gap0", "slope", "count", "weight")

SYNTHETIC = [
    # (server, arrival, timeout_s, fast)
    ({"kind": "paged_batching", "num_kv_blocks": 40, "block_size": 4, "max_num_seqs": 6,
      "max_num_batched_tokens": 64}, {"kind": "poisson", "rate_per_s": 8.0}, None, True),
    ({"kind": "paged_batching", "num_kv_blocks": 60, "block_size": 4, "prefill_first": True,
      "enable_chunked_prefill": False, "max_num_batched_tokens": 4096},
     {"kind": "closed_loop", "users": 12}, 6.0, True),
    ({"kind": "paged_batching", "num_kv_blocks": 400, "block_size": 16, "max_num_seqs": 32},
     {"kind": "poisson", "rate_per_s": 20.0}, 3.0, False),
    ({"kind": "serial_decode", "parallel": 3, "ctx_size": 600, "batch_size": 48},
     {"kind": "poisson", "rate_per_s": 4.0}, 8.0, True),
    ({"kind": "serial_decode", "parallel": 3, "ctx_size": 300, "batch_size": 64, "kv_unified": True},
     {"kind": "closed_loop", "users": 5}, None, False),
    ({"kind": "single_queue", "num_parallel": 2, "num_ctx": 120, "num_batch": 32, "max_queue": 3},
     {"kind": "poisson", "rate_per_s": 6.0}, 10.0, True),
    # fleets: every driving mode (lazy, scrape, live, closed loop) and P/D
    ({"kind": "fleet", "router": {"kind": "prefix_trie"}, "members": [
        {"kind": "paged_batching", "num_kv_blocks": 200, "max_num_seqs": 8, "replicas": 2},
        {"kind": "serial_decode", "parallel": 2, "ctx_size": 600}]}, {"kind": "poisson", "rate_per_s": 12.0}, 8.0, True),
    ({"kind": "paged_batching", "num_kv_blocks": 200, "max_num_seqs": 8, "replicas": 3, "router": {"kind": "llm_d"}},
     {"kind": "poisson", "rate_per_s": 15.0}, None, True),
    ({"kind": "paged_batching", "num_kv_blocks": 200, "max_num_seqs": 8, "replicas": 3, "router": {"kind": "kv_cost"}},
     {"kind": "closed_loop", "users": 10, "turns": 3}, None, True),
    ({"kind": "fleet", "prefill": {"kind": "paged_batching", "num_kv_blocks": 300},
      "decode": {"kind": "paged_batching", "num_kv_blocks": 200, "max_num_seqs": 8, "replicas": 2},
      "router": {"kind": "least_outstanding"}}, {"kind": "poisson", "rate_per_s": 10.0}, None, True),
]


def _columns(prefix: str, result: PointResult) -> dict[str, np.ndarray]:
    rec = result.recorder
    out = {f"{prefix}/{name}": np.asarray(getattr(rec, name)) for name in COLUMNS}
    out.update({f"{prefix}/itl_{name}": np.array(col) for name, col in zip(ITL, rec.itl_columns(), strict=True)})
    out[f"{prefix}/totals"] = np.array([rec.now, rec.busy_s, rec.num_passes], dtype=float)
    numbers = sorted((k, v) for k, v in result.metrics.items() if isinstance(v, int | float))
    out[f"{prefix}/metric_names"] = np.array([k for k, _ in numbers])
    out[f"{prefix}/metrics"] = np.array([v for _, v in numbers], dtype=float)
    return out


def results() -> dict[str, np.ndarray]:
    """Columns of every run, keyed ``<case>/<point>/<column>``."""
    out: dict[str, np.ndarray] = {}
    for path in sorted((ROOT / "scenarios").rglob("*.yaml")):
        if "fleets" in path.parts:  # minutes each: the fleet runs below stand for them
            continue
        for j, result in enumerate(run(load_scenario(path))):
            out.update(_columns(f"{path.relative_to(ROOT)}/{j}", result))
    for k, (server, arrival, timeout_s, fast) in enumerate(SYNTHETIC):
        scenario = tiny_scenario(
            server, arrival=arrival, prompt={"kind": "uniform", "low": 8, "high": 160},
            output={"kind": "uniform", "low": 1, "high": 90}, num_requests=400, step_s=None,
            seed=k, timeout_s=timeout_s,
        )
        out.update(_columns(f"synthetic/{k}", run_server(scenario, fast=fast)))
    return out


if __name__ == "__main__":
    import sim

    np.savez(sys.argv[1], core_compiled=np.array(sim.CORE.compiled), **results())
