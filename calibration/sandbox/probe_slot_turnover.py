"""Probe llama-server's slot turnover: what the main loop does between batches when slots change hands.

A DIAGNOSTIC (never fitted): against a llama-server started with ``-lv 4`` (trace log), send
``--sequential`` one-user requests, then ``--users`` users x ``--waves`` requests at once; the
server's log then shows, per launched task, the selected slot's prompt-cache update and the
saving of the other idle slots to the host-RAM prompt cache (``--cache-ram``, on by default in
current builds), with timestamps. Prints, per request, when it was sent, its TTFT and the
server's own prompt time (requests that share a prefill batch have equal prompt times).

    llama-server -m M.gguf -t 1 -tb 1 -c 4096 -np 4 --port 18801 -lv 4 > server.log 2>&1 &
    python calibration/sandbox/probe_slot_turnover.py --port 18801
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure_llama_server import prompt_ids, stream  # noqa: E402  (the load generator's request and prompts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--prompt", type=int, default=256)
    ap.add_argument("--output", type=int, default=32)
    ap.add_argument("--sequential", type=int, default=12)
    ap.add_argument("--users", type=int, default=3)
    ap.add_argument("--waves", type=int, default=3)
    args = ap.parse_args()
    for k in range(args.sequential):
        r = stream(args.port, prompt_ids(args.prompt, 5_000_000 + k), args.output)
        print(f"sequential {k}: ttft {r['ttft_s'] * 1e3:.1f} ms, server prompt {r.get('server_prompt_ms')} ms", flush=True)
    t0 = time.perf_counter()

    def user(u: int) -> None:
        for k in range(args.waves):
            sent = time.perf_counter() - t0
            r = stream(args.port, prompt_ids(args.prompt, 6_000_000 + 10 * u + k), args.output)
            print(f"user {u} request {k}: sent {sent * 1e3:.1f} ms, ttft {r['ttft_s'] * 1e3:.1f} ms, "
                  f"server prompt {r.get('server_prompt_ms')} ms", flush=True)

    threads = [threading.Thread(target=user, args=(u,)) for u in range(args.users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
