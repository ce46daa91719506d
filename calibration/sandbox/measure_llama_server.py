"""Closed-loop load on llama.cpp's own ``llama-server``: one row of request-level metrics per user count.

Used for two data sets on the developers' sandbox (calibration/data/sandbox_zen4/README.md):

* CALIBRATION: one user (``--users 1``), ``--parallel 1`` and ``--parallel 4``: the single-user
  server runs from which the llama.cpp front-end cost is fitted (as
  ``calibration/data/this_machine/llama_cpp/server_single_stream.csv`` on the other machine);
* VALIDATION: 2-16 users, the same two servers: never fitted on.

Each user sends a request, waits for its last streamed token and sends the next (no think
time), until the level's request count is reached. Every prompt is ``--prompt`` distinct token
ids (no prefix reuse) and every answer exactly ``--output`` tokens (``ignore_eos``). Per request:
TTFT (first streamed token) and e2e from the client's clock, the server's own ``timings``.

Metrics, as ``vllm bench serve`` defines them where it has them (docs/metrics.md):
``throughput_tok_s`` = output tokens / duration (first request sent to last token received);
``tpot`` per request = (e2e - TTFT) / (output tokens - 1); percentiles by ``numpy.percentile``.
CPU accounting from /proc: the server process, this load generator, and the rest of the machine
(``cpu_foreign_cores``), in cores over the level's duration.

    python calibration/sandbox/measure_llama_server.py --server PATH/llama-server --model M.gguf \
        --parallel 4 --ctx 4096 --users 2,4,8,16 --requests 96 --tag np4_t1 --out DIR

Needs numpy and ``gguf`` (through ``calibration/pyserver/``'s helpers, shared with the Python
server's measurement); ``llama-server`` is built from llama.cpp's sources (not a dependency of
servesim).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pyserver"))
from measure_overhead import (  # the same prompts, port choice, readiness poll, SSE reader and CPU clock
    busy_seconds,
    free_port,
    prompt_ids,
    sse_chunks,
    wait_ready,
)

FIELDS = (
    "tag", "concurrency", "parallel", "threads", "prompt_tokens", "max_tokens", "requests_total", "requests_ok",
    "errors", "duration_s", "throughput_tok_s", "throughput_req_s", "e2e_p50_s", "e2e_p90_s", "e2e_p99_s",
    "e2e_max_s", "ttft_p50_s", "ttft_p99_s", "tpot_p50_ms", "tpot_p99_ms", "mean_out_tokens",
    "server_prompt_ms_p50", "server_predicted_per_token_ms_p50", "cpu_busy_cores", "cpu_server_cores",
    "cpu_loadgen_cores", "cpu_foreign_cores", "loadavg_end", "date",
)


def stream(port: int, ids: list[int], n: int) -> dict:
    """One streamed ``/completion``: client-side TTFT, e2e and token count, and the server's timings."""
    body = json.dumps({"prompt": ids, "n_predict": n, "ignore_eos": True, "stream": True, "temperature": 0.0,
                       "cache_prompt": False}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/completion", data=body,
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    first, tokens, timings = None, 0, {}
    with urllib.request.urlopen(req, timeout=900) as resp:
        for chunk in sse_chunks(resp):
            if chunk.get("content") or chunk.get("tokens"):
                tokens += 1
                if first is None:
                    first = time.perf_counter() - t0
            if chunk.get("stop"):
                timings = chunk.get("timings", {})
    return {"t_send": t0, "ttft_s": first, "e2e_s": time.perf_counter() - t0, "tokens": tokens,
            "server_prompt_ms": timings.get("prompt_ms"), "server_predicted_per_token_ms": timings.get("predicted_per_token_ms")}


def stream_openai(port: int, ids: list[int], n: int) -> dict:
    """One streamed OpenAI ``/v1/completions`` (vLLM's server): client-side TTFT and e2e, and the
    completion tokens from the final usage chunk (a slow reader may get several tokens per chunk)."""
    body = json.dumps({"model": "smol", "prompt": ids, "max_tokens": n, "min_tokens": n, "ignore_eos": True,
                       "stream": True, "temperature": 0.0, "stream_options": {"include_usage": True}}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    first, tokens = None, 0
    with urllib.request.urlopen(req, timeout=900) as resp:
        for chunk in sse_chunks(resp):
            if chunk.get("choices") and chunk["choices"][0].get("text") and first is None:
                first = time.perf_counter() - t0
            if chunk.get("usage"):
                tokens = int(chunk["usage"]["completion_tokens"])
    return {"t_send": t0, "ttft_s": first, "e2e_s": time.perf_counter() - t0, "tokens": tokens,
            "server_prompt_ms": None, "server_predicted_per_token_ms": None}


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (vLLM's API server starts its engine core as a child)."""
    parent = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += [c for c, pp in parent.items() if pp == p]
    return out


def cpu_seconds(pid: int) -> tuple[float, float, float]:
    """CPU seconds used so far by the whole machine, by process ``pid`` and its children, and by
    this process."""
    hz = os.sysconf("SC_CLK_TCK")

    def proc(p: int | str) -> float:
        parts = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / hz  # utime + stime

    def tree(p: int) -> float:
        total = 0.0
        for q in _tree(p):
            try:
                total += proc(q)
            except OSError:  # ended meanwhile
                continue
        return total

    return busy_seconds(), tree(pid), proc("self")


def run_level(port: int, server_pid: int, users: int, total: int, prompt: int, output: int, salt0: int,
              send=stream) -> tuple[list[dict], dict]:
    lock = threading.Lock()
    state = {"next": 0}
    rows: list[dict] = []

    def user(u: int) -> None:
        while True:
            with lock:
                i = state["next"]
                if i >= total:
                    return
                state["next"] += 1
            try:
                r = send(port, prompt_ids(prompt, salt0 + i), output)
                r.update(user=u, seq=i, status="ok" if r["tokens"] == output else "short")
            except OSError as exc:  # a refused or dropped request: recorded, not retried
                r = {"user": u, "seq": i, "status": f"error: {exc}", "t_send": None, "ttft_s": None,
                     "e2e_s": None, "tokens": 0}
            with lock:
                rows.append(r)

    c0 = cpu_seconds(server_pid)
    t0 = time.perf_counter()
    threads = [threading.Thread(target=user, args=(u,)) for u in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    c1 = cpu_seconds(server_pid)
    cpu = {"cpu_busy_cores": (c1[0] - c0[0]) / wall, "cpu_server_cores": (c1[1] - c0[1]) / wall,
           "cpu_loadgen_cores": (c1[2] - c0[2]) / wall}
    cpu["cpu_foreign_cores"] = cpu["cpu_busy_cores"] - cpu["cpu_server_cores"] - cpu["cpu_loadgen_cores"]
    return rows, cpu


def summarize(rows: list[dict], cpu: dict, **info) -> dict:
    ok = [r for r in rows if r["status"] == "ok"]
    start = min(r["t_send"] for r in ok)
    end = max(r["t_send"] + r["e2e_s"] for r in ok)
    duration = end - start
    e2e = np.array([r["e2e_s"] for r in ok])
    ttft = np.array([r["ttft_s"] for r in ok])
    out_tok = np.array([r["tokens"] for r in ok])
    tpot = (e2e - ttft) / (out_tok - 1) * 1e3
    srv_p = [r["server_prompt_ms"] for r in ok if r.get("server_prompt_ms") is not None]
    srv_t = [r["server_predicted_per_token_ms"] for r in ok if r.get("server_predicted_per_token_ms") is not None]
    row = dict(info)
    row.update(
        requests_total=len(rows), requests_ok=len(ok), errors=len(rows) - len(ok), duration_s=duration,
        throughput_tok_s=out_tok.sum() / duration, throughput_req_s=len(ok) / duration,
        e2e_p50_s=np.percentile(e2e, 50), e2e_p90_s=np.percentile(e2e, 90), e2e_p99_s=np.percentile(e2e, 99),
        e2e_max_s=e2e.max(), ttft_p50_s=np.percentile(ttft, 50), ttft_p99_s=np.percentile(ttft, 99),
        tpot_p50_ms=np.percentile(tpot, 50), tpot_p99_ms=np.percentile(tpot, 99), mean_out_tokens=out_tok.mean(),
        server_prompt_ms_p50=np.percentile(srv_p, 50) if srv_p else "",
        server_predicted_per_token_ms_p50=np.percentile(srv_t, 50) if srv_t else "",
        loadavg_end=os.getloadavg()[0], date=time.strftime("%Y-%m-%d"), **cpu)
    return {k: (round(float(v), 6) if isinstance(v, (float, np.floating)) else
                int(v) if isinstance(v, np.integer) else v) for k, v in row.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", help="path to the llama-server binary (--api llama)")
    ap.add_argument("--model", help="GGUF file (--api llama)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--ctx", type=int, default=2048, help="--ctx-size (all slots together)")
    ap.add_argument("--users", default="1")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--output", type=int, default=64)
    ap.add_argument("--requests", type=int, default=64, help="requests per level (all users together)")
    ap.add_argument("--api", choices=("llama", "openai"), default="llama",
                    help="llama: launch llama-server (--server) and use /completion; openai: a server already "
                         "listening on --port (e.g. vllm serve ... --served-model-name smol), /v1/completions")
    ap.add_argument("--port", type=int, help="with --api openai: the running server's port")
    ap.add_argument("--server-pid", type=int, help="with --api openai: its process id (CPU accounting)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.api == "openai":
        if args.port is None or args.server_pid is None:
            ap.error("--api openai needs --port and --server-pid of the running server")
        port, pid, send, server, command = args.port, args.server_pid, stream_openai, None, "external (see the data README)"
    else:
        if args.server is None or args.model is None:
            ap.error("--api llama needs --server and --model")
        port = free_port()
        cmd = [args.server, "-m", args.model, "-t", str(args.threads), "-tb", str(args.threads), "-c", str(args.ctx),
               "-np", str(args.parallel), "--port", str(port), "--host", "127.0.0.1", "--no-webui"]
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=(out / f"{args.tag}_server.log").open("w"))
        pid, send = server.pid, stream
        command = " ".join(["llama-server", "-m", Path(args.model).name, *cmd[3:]])
    try:
        wait_ready(f"http://127.0.0.1:{port}/health", 120.0)
        send(port, prompt_ids(16, 999_999), 4)  # warm-up, not recorded
        for level, users in enumerate(int(u) for u in args.users.split(",")):
            rows, cpu = run_level(port, pid, users, args.requests, args.prompt, args.output,
                                  salt0=_salt_base(args.tag) + 100_000 * (level + 1), send=send)
            # --parallel and --threads configure a llama-server this script starts; an external server's are its own
            # (left empty rather than recording this script's defaults)
            external = args.api == "openai"
            row = summarize(rows, cpu, tag=args.tag, concurrency=users, parallel="" if external else args.parallel,
                            threads="" if external else args.threads,
                            prompt_tokens=args.prompt, max_tokens=args.output)
            print(json.dumps(row), flush=True)
            _write(out, args.tag, users, row, rows)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    (out / f"{args.tag}_machine.json").write_text(json.dumps({
        "platform": platform.platform(), "cpu_family_model": _cpu_family(), "cores": os.cpu_count(),
        "command": command, "date": time.strftime("%Y-%m-%d"),
    }, indent=2))
    return 0


def _salt_base(tag: str) -> int:
    """Prompt salts of a run start here: one per tag, so that two runs against the same server (a
    one-user diagnostic, then the load levels) never send the same prompt (a prefix cache would
    reuse it). Before 2026-12-06 every run started at 100000, see the data README."""
    return 1_000_000 * (zlib.crc32(tag.encode()) % 1000 + 1)


def _write(out: Path, tag: str, users: int, row: dict, rows: list[dict]) -> None:
    """Append the level's summary row to summary.csv and write its per-request file."""
    summary_path = out / "summary.csv"
    new = not summary_path.exists()
    with summary_path.open("a", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            wr.writeheader()
        wr.writerow({k: row.get(k, "") for k in FIELDS})
    with (out / f"{tag}_c{users}_requests.csv").open("w", newline="") as f:
        keys = ("user", "seq", "t_send", "ttft_s", "e2e_s", "tokens", "server_prompt_ms",
                "server_predicted_per_token_ms", "status")
        wr = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        wr.writeheader()
        t_first = min(r["t_send"] for r in rows if r["t_send"] is not None)
        for r in sorted(rows, key=lambda r: r["seq"]):
            wr.writerow(dict(r, t_send=None if r["t_send"] is None else round(r["t_send"] - t_first, 6)))


def _cpu_family() -> str:
    info = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    keep = {}
    for line in info.splitlines():
        k, _, v = line.partition(":")
        if k.strip() in ("model name", "cpu family", "model"):
            keep[k.strip()] = v.strip()
    return json.dumps(keep)


if __name__ == "__main__":
    raise SystemExit(main())
