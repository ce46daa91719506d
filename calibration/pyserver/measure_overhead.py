"""Measure what llama-cpp-python's OpenAI server adds to llama.cpp's own pass times.

Calibration data for the Python server (CALIBRATION, not validation: other prompt and output
lengths than the validation runs in calibration/data/this_machine/llama_cpp_python_server/).
On one machine, in one session, with one compute thread:

1. **raw** pass times through llama.cpp's C API (``llama_decode`` via ctypes, no Python work per
   token beyond the call): a P-token prompt pass with logits for the last token only (as
   ``llama-server`` asks) and for every token (as llama-cpp-python's server asks: its
   ``logits_all`` setting defaults to True), and single-token decode passes;
2. **server**: ``python -m llama_cpp.server`` with the same model and threads, one closed-loop
   user streaming completions; per request the time to first token (TTFT) and the mean gap
   between later tokens (TPOT), from the client's clock.

The server's per-token overhead is TPOT minus the raw decode pass; its per-request overhead is
TTFT minus the raw all-logits prompt pass minus one decode pass. Output: one CSV row per (workload, request) and a summary JSON.

    python calibration/pyserver/measure_overhead.py MODEL.gguf --out DIR

Needs ``llama-cpp-python[server]`` (not a dependency of servesim).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_gguf import piece

WORKLOADS = ((32, 128), (512, 16), (256, 64))
"""(prompt tokens, output tokens): none is the validation runs' (128, 64)."""
DECODE_CONTEXTS = (32, 256, 512)
"""Contexts at which raw decode passes are timed; each workload uses the nearest to its mean."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, timeout_s: float) -> None:
    """Poll ``url`` every 0.5 s until it answers (a server loading its model), at most ``timeout_s``."""
    for _ in range(int(timeout_s / 0.5)):
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.5)


def sse_chunks(resp) -> Iterator[dict]:
    """The JSON objects of a server-sent-events response, one per ``data:`` line (``[DONE]`` skipped)."""
    for raw in resp:
        line = raw.decode().strip()
        if line.startswith("data:") and line != "data: [DONE]":
            yield json.loads(line[5:])


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores; idle and iowait excluded), /proc/stat."""
    vals = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return (sum(vals) - vals[3] - vals[4]) / os.sysconf("SC_CLK_TCK")


def prompt_ids(n: int, salt: int) -> list[int]:
    """n token ids, distinct per salt so that no prefix is reused (BOS first): ids drawn from a
    generator seeded by the salt.

    Until 2026-12-06 the ids were ``300 + (salt * 7919 + 13 i) % 40000``, which repeats with period
    40000 in the salt: the load generator's levels (salts 100000, 200000, ... + request) then sent
    the same prompts at levels two apart, and a server with a prefix cache (vLLM) reused them.
    The data README says which recorded runs that affected.
    """
    rng = np.random.default_rng([salt, 0x5EED])
    return [1, *(int(x) for x in rng.integers(300, 40300, n - 1))]


def prompt_text(n: int, salt: int) -> str:
    """The text of :func:`prompt_ids` in make_gguf.py's vocabulary (one character per token)."""
    return "".join(piece(i) for i in prompt_ids(n, salt)[1:])


def raw_passes(model: str, threads: int, reps: int) -> dict:
    """Median seconds of a P-token prompt pass (each P of WORKLOADS) and of one decode pass."""
    import llama_cpp as ll

    ll.llama_backend_init()
    mp = ll.llama_model_default_params()
    m = ll.llama_model_load_from_file(model.encode(), mp)
    cp = ll.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch = 2048, 2048, 512
    cp.n_threads = cp.n_threads_batch = threads
    ctx = ll.llama_init_from_model(m, cp)
    mem = ll.llama_get_memory(ctx)
    out = {}

    def decode(ids: list[int], all_logits: bool = False, past: int = 0) -> float:
        batch = ll.llama_batch_init(len(ids), 0, 1)
        for i, tok in enumerate(ids):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = tok, past + i, 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = 1 if all_logits or i == len(ids) - 1 else 0
        batch.n_tokens = len(ids)
        t0 = time.perf_counter()
        rc = ll.llama_decode(ctx, batch)
        dt = time.perf_counter() - t0
        ll.llama_batch_free(batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")
        return dt

    for p, _ in WORKLOADS:
        for all_logits in (False, True):
            times = []
            for r in range(reps):
                ll.llama_memory_clear(mem, True)
                times.append(decode(prompt_ids(p, r), all_logits))
            out[f"prompt_{p}{'_all_logits' if all_logits else ''}_s"] = statistics.median(times)
    for ctx_len in DECODE_CONTEXTS:
        ll.llama_memory_clear(mem, True)
        decode(prompt_ids(ctx_len, 99))
        times = [decode([400 + i], past=ctx_len + i) for i in range(64)]
        out[f"decode_at_{ctx_len}_s"] = statistics.median(times)
    ll.llama_free(ctx)
    ll.llama_model_free(m)
    return out


def stream(port: int, prompt: str, max_tokens: int) -> tuple[float, list[float], int]:
    """(TTFT, arrival times of every streamed token, completion tokens) of one request."""
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "stream": True, "temperature": 0.0,
                       "stream_options": {"include_usage": True}}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    stamps = []
    with urllib.request.urlopen(req, timeout=600) as resp:
        for chunk in sse_chunks(resp):
            if chunk.get("choices") and chunk["choices"][0].get("text"):  # the final chunk is empty
                stamps.append(time.perf_counter() - t0)
    return stamps[0], stamps, len(stamps)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--requests", type=int, default=24)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import llama_cpp

    raw = raw_passes(args.model, args.threads, reps=7)
    print("raw", json.dumps(raw), flush=True)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", args.model, "--n_threads", str(args.threads),
         "--n_threads_batch", str(args.threads), "--n_ctx", "2048", "--port", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=(out / "server.log").open("w"))
    rows, summary = [], {}
    try:
        wait_ready(f"http://127.0.0.1:{port}/v1/models", 60.0)
        stream(port, prompt_text(16, 12345), 4)  # warm-up
        for p, n in WORKLOADS:
            ttfts, tpots = [], []
            for r in range(args.requests):
                ttft, stamps, got = stream(port, prompt_text(p, 1000 * p + r), n)
                tpot = (stamps[-1] - stamps[0]) / (got - 1) if got > 1 else float("nan")
                rows.append({"prompt_tokens": p, "max_tokens": n, "request": r, "completion_tokens": got,
                             "ttft_s": f"{ttft:.6f}", "e2e_s": f"{stamps[-1]:.6f}", "tpot_s": f"{tpot:.6f}"})
                if got == n:
                    ttfts.append(ttft)
                    tpots.append(tpot)
            summary[f"p{p}_o{n}"] = {
                "requests_full_length": len(ttfts),
                "ttft_median_s": statistics.median(ttfts),
                "tpot_median_s": statistics.median(tpots),
                "raw_prompt_s": raw[f"prompt_{p}_s"],
                "raw_prompt_all_logits_s": raw[f"prompt_{p}_all_logits_s"],
            }
            near = min(DECODE_CONTEXTS, key=lambda c: abs(c - p - n / 2))
            summary[f"p{p}_o{n}"]["raw_decode_s"] = raw[f"decode_at_{near}_s"]
            summary[f"p{p}_o{n}"]["token_overhead_s"] = statistics.median(tpots) - raw[f"decode_at_{near}_s"]
            summary[f"p{p}_o{n}"]["request_overhead_s"] = (
                statistics.median(ttfts) - raw[f"prompt_{p}_all_logits_s"] - raw[f"decode_at_{near}_s"])
            print(p, n, json.dumps(summary[f"p{p}_o{n}"]), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    with (out / "pyserver_overhead_requests.csv").open("w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    info = {
        "llama_cpp_python": llama_cpp.__version__, "python": sys.version.split()[0],
        "platform": platform.platform(), "cpu": platform.processor() or Path("/proc/cpuinfo").read_text().split(
            "model name")[1].split("\n")[0].strip(": "), "cores": os.cpu_count(), "threads": args.threads,
        "loadavg_end": os.getloadavg(), "date": time.strftime("%Y-%m-%d"),
        "command": "python " + " ".join(sys.argv),
    }
    (out / "pyserver_overhead_summary.json").write_text(json.dumps(
        {"machine": info, "raw_passes": raw, "workloads": summary}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
