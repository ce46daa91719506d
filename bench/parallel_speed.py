"""Simulator cost per request of parallel servers against one device (docs/parallelism.md, Speed).

    PYTHONPATH=. SERVESIM_PURE_PYTHON=1 python bench/parallel_speed.py
"""

import time

from sim.scenario import parse_scenario
from sim.simulation import run


def sc(model, hw, server, n=3000):
    return parse_scenario({"name":"s","model":model,"hardware":hw,"workload":{"arrival":{"kind":"poisson","rate_per_s":20.0},
      "prompt_tokens":{"kind":"fixed","value":256},"output_tokens":{"kind":"fixed","value":128},"num_requests":n},"servers":[server]})
cases = [("8B TP1 (one device)", "llama-3.1-8b", "h100-sxm", {"engine":"vllm","max_model_len":8192}),
         ("70B TP8", "llama-3.1-70b", "8x h100-sxm", {"engine":"vllm","max_model_len":8192,"tensor_parallel_size":8}),
         ("70B TP2 PP4", "llama-3.1-70b", "8x h100-sxm", {"engine":"vllm","max_model_len":8192,"tensor_parallel_size":2,"pipeline_parallel_size":4}),
         ("Mixtral TP2", "mixtral-8x7b", "2x h100-sxm", {"engine":"vllm","max_model_len":8192,"tensor_parallel_size":2})]
for name, m, hw, srv in cases:
    s = sc(m, hw, srv)
    best = 1e9
    for _ in range(3):
        t0 = time.perf_counter(); r = run(s); best = min(best, time.perf_counter() - t0)
    print(f"{name}: {best*1e6/3000:.1f} us per request (best of 3, 3000 requests)")
