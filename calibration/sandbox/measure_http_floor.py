"""Round trips through a running OpenAI-compatible server's HTTP layer that do no engine work.

A lower bound of the front end's per-request time (sim/frontend.py, ``request_s``): every
completion request goes through the same HTTP server, request parsing and response path, then
to the engine. The fit (calibration/fit_frontend.py) takes a machine's ``request_s`` as at least
this floor where the subtraction TTFT - engine prefill comes out below it (the subtraction's
noise is a few ms on the 2-core sandbox, larger than the quantity).

For each endpoint, ``--repeat`` sequential requests (one at a time, a fresh connection each, as
the load generator does); per endpoint the median, 10th and 90th percentiles in ms:

* ``GET /v1/models``: the HTTP server and routing only;
* ``POST /tokenize`` with a one-word text prompt: a JSON body parsed and validated, the API
  process's tokenizer (vLLM's one-worker pool), a JSON response.

    python calibration/sandbox/measure_http_floor.py --port 18771 --out DIR --tag vllm_t1
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
import urllib.request
from pathlib import Path

import numpy as np


def _time(req_factory, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        req = req_factory()
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=60) as resp:
            resp.read()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--model", default="smol", help="the server's served model name")
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    body = json.dumps({"model": args.model, "prompt": "hello"}).encode()
    endpoints = {
        "GET /v1/models": lambda: urllib.request.Request(f"{base}/v1/models"),
        "POST /tokenize": lambda: urllib.request.Request(f"{base}/tokenize", data=body,
                                                         headers={"Content-Type": "application/json"}),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, factory in endpoints.items():
        _time(factory, 10)  # warm-up, not recorded
        ms = np.array(_time(factory, args.repeat))
        rows.append({"tag": args.tag, "endpoint": name, "n": ms.size,
                     "median_ms": round(float(np.median(ms)), 4),
                     "p10_ms": round(float(np.percentile(ms, 10)), 4),
                     "p90_ms": round(float(np.percentile(ms, 90)), 4)})
        print(json.dumps(rows[-1]), flush=True)
    with (out / "http_floor.csv").open("w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    (out / "http_floor_machine.json").write_text(json.dumps({
        "platform": platform.platform(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
        "repeat": args.repeat,
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
