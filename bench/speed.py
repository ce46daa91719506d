"""How fast the simulator runs, and how much memory a request costs: prints figures, asserts nothing.

Each case simulates an open-loop Poisson workload at about 90 % of the server's saturated
throughput, with ShareGPT prompt/output lengths (rows of
``data/traces/length_distributions/sharegpt_8k_filtered_stats_llama2_tokenizer.csv``), on
llama-3.1-8b / h100-sxm. The 90 % rate is measured, not assumed: a short closed-loop run
(``--calibration-requests`` requests, users = the server's concurrency, no think time) gives the
saturated request rate of each architecture, and the Poisson rate is ``--load`` times that.

Every case runs in a fresh interpreter (this script re-invoked with a hidden ``--one``) so that
the peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``) is the case's own; ``bytes_per_request`` is
the growth of the peak over the baseline taken just before the run, divided by the requests.

Usage::

    python bench/speed.py                              # default list: 3 architectures @ 10k, paged @ 100k
    python bench/speed.py --json                       # one JSON line per case on stdout
    python bench/speed.py --requests 1000000 --json    # paged_batching @ 1M only
    python bench/speed.py --requests 1000000 --all     # ... plus the three architectures @ 10k
    python bench/speed.py --reference                  # also the one-pass-at-a-time mode (fast=False)
    python bench/speed.py --profile                    # cProfile of paged_batching @ 10k (top 25 by tottime)
    python bench/speed.py --pure                       # the same cases on the pure-Python core
    python bench/speed.py --seed-benchmark             # only the seed benchmark (in-process and command)

Every line says which core ran (``core``: ``compiled`` with mypyc, or ``pure`` Python; see
``sim/_core.py``). The default list ends with the seed benchmark: its 12 points simulated in a
fresh interpreter, and the whole ``servesim run scenarios/seed_benchmark.yaml --out DIR`` command
(imports, table, result files and plots included), best of three.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
LENGTHS = REPO / "data" / "traces" / "length_distributions" / "sharegpt_8k_filtered_stats_llama2_tokenizer.csv"
MODEL, HARDWARE = "llama-3.1-8b", "h100-sxm"

# Server specs of the three architectures. The slot servers get 8192 tokens of context per slot,
# the longest row of the ShareGPT-8k table, so no request is refused or truncated for its length.
SERVERS: dict[str, dict[str, Any]] = {
    "paged_batching": {
        "kind": "paged_batching", "max_num_seqs": 256, "max_num_batched_tokens": 8192,
        "enable_prefix_caching": False,
    },
    "serial_decode": {"kind": "serial_decode", "parallel": 4, "ctx_size": 4 * 8192},
    "single_queue": {"kind": "single_queue", "num_parallel": 4, "num_ctx": 8192},
}
CONCURRENCY = {"paged_batching": 256, "serial_decode": 4, "single_queue": 4}
"""Closed-loop users of the saturation run: the requests the server can run at once."""

SEED_SCENARIO = REPO / "scenarios" / "seed_benchmark.yaml"
PURE_ENV = "SERVESIM_PURE_PYTHON"

ARCH_REQUESTS = 10_000
DEFAULT_SIZES = (10_000, 100_000)
REFERENCE_MAX = 10_000
NOISE_CORRELATION_S = 2.6
"""Correlation time of --speed-noise (the sandbox's fitted noise-epyc-zen4-2c-vm: 2.63 s)."""
METRIC_KEYS = (
    "completed", "request_throughput", "output_throughput", "mean_ttft_ms", "p99_ttft_ms",
    "mean_e2el_ms", "p99_e2el_ms", "num_preemptions", "cancelled", "busy_fraction",
)


# ---------------------------------------------------------------------------------------------
# scenarios
# ---------------------------------------------------------------------------------------------
def scenario_data(arch: str, arrival: dict[str, Any], requests: int, seed: int, noise_cv: float = 0.0) -> dict[str, Any]:
    """A scenario as plain data (validated in-process by ``parse_scenario``); ``noise_cv`` > 0 gives
    the server a speed noise of that cv with the sandbox's correlation time (sim/noise.py)."""
    lengths = {"kind": "empirical", "path": str(LENGTHS)}
    server = dict(SERVERS[arch])
    if noise_cv > 0:
        server["speed_noise"] = {"cv": noise_cv, "correlation_s": NOISE_CORRELATION_S}
    return {
        "name": f"bench-{arch}",
        "seed": seed,
        "model": MODEL,
        "hardware": HARDWARE,
        "workload": {
            "arrival": arrival,
            "prompt_tokens": lengths,
            "output_tokens": dict(lengths),  # same file: whole rows are sampled
            "num_requests": requests,
        },
        "servers": [server],
    }


def calibrate(arch: str, requests: int, seed: int) -> dict[str, Any]:
    """Saturated request rate: a closed loop with as many users as the server runs at once."""
    from sim.scenario import parse_scenario
    from sim.simulation import run_server

    users = CONCURRENCY[arch]
    scenario = parse_scenario(scenario_data(arch, {"kind": "closed_loop", "users": users}, requests, seed))
    t0 = time.perf_counter()
    result = run_server(scenario, 0, fast=True)
    wall = time.perf_counter() - t0
    m = result.metrics
    return {
        "architecture": arch,
        "calibration_requests": requests,
        "calibration_users": users,
        "saturation_rps": m["request_throughput"],
        "saturation_output_throughput": m["output_throughput"],
        "calibration_wall_s": round(wall, 3),
    }


# ---------------------------------------------------------------------------------------------
# one case, in its own process
# ---------------------------------------------------------------------------------------------
def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _reset_peak_rss() -> bool:
    """Lower the peak-RSS mark to the current RSS (Linux ``clear_refs`` 5), so that a transient
    peak of the imports does not hide the run's growth. False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one case in this process and return its figures."""
    if spec["architecture"] == "seed_benchmark":
        return run_seed(spec)
    import numpy as np

    import sim
    from sim.metrics import summarize
    from sim.scenario import parse_scenario
    from sim.simulation import resolve_servers, run_server
    from sim.simulation import scenario_workload

    arch, requests, fast = spec["architecture"], spec["requests"], spec["fast"]
    arrival = {"kind": "poisson", "rate_per_s": spec["rate_per_s"]}
    scenario = parse_scenario(scenario_data(arch, arrival, requests, spec["seed"], spec.get("speed_noise", 0.0)))
    resolve_servers(scenario)  # catalog and cost profiles loaded before the baseline
    import_peak = _maxrss_bytes()
    reset = _reset_peak_rss()
    base = _maxrss_bytes()  # = current RSS when the reset worked

    t0 = time.perf_counter()
    cpu0 = time.process_time()
    workload = scenario_workload(scenario)
    t1 = time.perf_counter()
    result = run_server(scenario, 0, fast=fast, workload=workload)
    t2 = time.perf_counter()
    cpu = time.process_time() - cpu0
    peak = _maxrss_bytes()

    rec = result.recorder
    t3 = time.perf_counter()
    summarize(rec, rec.num_arrived // 10)  # timed again on its own (outside wall_s): metrics cost
    metrics_s = time.perf_counter() - t3

    wall = t2 - t0
    finish = rec.finish_s[np.isfinite(rec.finish_s)]
    m = result.metrics
    out = {
        "case": spec["case"],
        "architecture": arch,
        "requests": requests,
        "fast": fast,
        "core": "compiled" if sim.CORE.compiled else "pure",
        "simulated_s": round(float(finish.max()) if finish.size else 0.0, 3),
        "wall_s": round(wall, 3),
        "requests_per_wall_s": round(requests / wall, 1),
        "peak_rss_mb": round(peak / 2**20, 1),
        "baseline_rss_mb": round(base / 2**20, 1),
        "import_peak_rss_mb": round(import_peak / 2**20, 1),
        "peak_reset": reset,
        "bytes_per_request": round((peak - base) / requests, 1),
        "rate_per_s": round(spec["rate_per_s"], 4),
        "saturation_rps": round(spec["saturation_rps"], 4),
        "load": spec["load"],
        "workload_s": round(t1 - t0, 3),
        "run_server_s": round(t2 - t1, 3),
        "metrics_s": round(metrics_s, 3),
        "cpu_s": round(cpu, 3),
        "passes": rec.num_passes,
        "itl_segments": len(rec.itl_gap0),
        "sim_s_per_wall_s": round((float(finish.max()) if finish.size else 0.0) / wall, 1),
    }
    for key in METRIC_KEYS:
        value = m.get(key)
        out[key] = round(value, 3) if isinstance(value, float) else value
    return out


def run_seed(spec: dict[str, Any]) -> dict[str, Any]:
    """The seed benchmark: its points simulated in this (fresh) process, then the whole command."""
    import tempfile

    import sim
    from sim.scenario import load_scenario

    t0 = time.perf_counter()
    results = sim.run(load_scenario(SEED_SCENARIO))  # profiles and catalog loaded inside
    simulate = time.perf_counter() - t0
    command = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as out:
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "sim.cli", "run", str(SEED_SCENARIO), "--out", out],
                           check=True, capture_output=True, cwd=REPO)
            command.append(round(time.perf_counter() - t, 3))
    return {
        "case": spec["case"], "architecture": "seed_benchmark", "fast": True,
        "core": "compiled" if sim.CORE.compiled else "pure",
        "points": len(results), "requests": sum(r.recorder.num_arrived for r in results),
        "simulate_s": round(simulate, 3), "command_s": command, "command_best_s": min(command),
    }


def run_in_subprocess(spec: dict[str, Any], timeout: float | None, pure: bool = False) -> dict[str, Any]:
    """Re-invoke this script with ``--one`` so that the case's peak RSS is its own."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", json.dumps(spec)]
    env = {**os.environ, PURE_ENV: "1"} if pure else None
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env, check=False)
    except subprocess.TimeoutExpired:
        return {"case": spec["case"], "architecture": spec["architecture"], "requests": spec.get("requests"),
                "fast": spec.get("fast"), "error": f"timed out after {timeout} s"}
    if proc.returncode != 0:
        return {"case": spec["case"], "architecture": spec["architecture"], "requests": spec.get("requests"),
                "fast": spec.get("fast"), "error": proc.stderr.strip().splitlines()[-1:] or [f"rc {proc.returncode}"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# case list, output
# ---------------------------------------------------------------------------------------------
def _size_label(n: int) -> str:
    for unit, div in (("M", 1_000_000), ("k", 1_000)):
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    return str(n)


def case_list(args: argparse.Namespace) -> list[tuple[str, int]]:
    """(architecture, requests) pairs, in run order, without duplicates."""
    cases: list[tuple[str, int]] = []
    if args.requests is None or args.all:
        cases += [(arch, ARCH_REQUESTS) for arch in SERVERS]
    sizes = args.requests if args.requests is not None else list(DEFAULT_SIZES)
    cases += [("paged_batching", n) for n in sizes]
    seen: set[tuple[str, int]] = set()
    return [c for c in cases if not (c in seen or seen.add(c))]


def _parse_sizes(text: str) -> list[int]:
    return [int(float(part.replace("_", ""))) for part in text.split(",") if part.strip()]


def host_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "platform": platform.platform()}


def readable(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{r['case']:<28} ERROR {r['error']}"
    if r["architecture"] == "seed_benchmark":
        return (f"{r['case']:<28} {r['core']:<8} {r['points']} points, {r['requests']} requests: simulated in "
                f"{r['simulate_s']:.2f}s; `servesim run ... --out` {r['command_best_s']:.2f}s "
                f"(best of {r['command_s']})")
    return (
        f"{r['case']:<28} {r['core']:<8} {'fast' if r['fast'] else 'ref '} n={r['requests']:<8} "
        f"sim={r['simulated_s']:>10.0f}s wall={r['wall_s']:>8.2f}s "
        f"{r['requests_per_wall_s']:>9.0f} req/s  peak={r['peak_rss_mb']:>7.1f}MB "
        f"{r['bytes_per_request']:>7.0f} B/req  rate={r['rate_per_s']:.3f}/s "
        f"out={r['output_throughput']:.0f} tok/s p99_e2el={r['p99_e2el_ms']:.0f}ms "
        f"passes={r['passes']} preempt={r['num_preemptions']}"
    )


def profile(args: argparse.Namespace, calib: dict[str, Any]) -> None:
    """cProfile of one architecture's 10k case (paged_batching by default), top 25 functions by tottime."""
    import cProfile
    import pstats

    from sim.scenario import parse_scenario
    from sim.simulation import resolve_servers, run_server
    from sim.simulation import scenario_workload

    arch = args.profile_arch
    rate = args.load * calib["saturation_rps"]
    scenario = parse_scenario(scenario_data(arch, {"kind": "poisson", "rate_per_s": rate}, ARCH_REQUESTS, args.seed))
    resolve_servers(scenario)
    workload = scenario_workload(scenario)
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    result = run_server(scenario, 0, fast=not args.reference_profile, workload=workload)
    prof.disable()
    wall = time.perf_counter() - t0
    print(
        f"profile: {arch} n={ARCH_REQUESTS} fast={not args.reference_profile} rate={rate:.3f}/s "
        f"wall={wall:.2f}s under cProfile, passes={result.recorder.num_passes}, "
        f"output_throughput={result.metrics['output_throughput']:.0f} tok/s"
    )
    stats = pstats.Stats(prof, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(25)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=_parse_sizes, default=None, metavar="N[,N...]",
                    help="paged_batching sizes only (default list: 3 architectures @ 10k + paged @ 10k,100k)")
    ap.add_argument("--all", action="store_true", help="with --requests: also the 3 architectures @ 10k")
    ap.add_argument("--json", action="store_true", help="one JSON line per case on stdout (host/calibration on stderr)")
    ap.add_argument("--reference", action="store_true",
                    help="also run fast=False (one pass at a time) for cases of <= --reference-max requests")
    ap.add_argument("--reference-max", type=int, default=REFERENCE_MAX, help="largest size run with --reference")
    ap.add_argument("--profile", action="store_true", help="cProfile the 10k case (--profile-arch, default paged_batching), top 25 by tottime")
    ap.add_argument("--profile-arch", choices=list(SERVERS), default="paged_batching",
                    help="with --profile: the architecture profiled")
    ap.add_argument("--reference-profile", action="store_true", help="with --profile: profile fast=False instead")
    ap.add_argument("--load", type=float, default=0.9, help="Poisson rate as a fraction of the saturated rate")
    ap.add_argument("--calibration-requests", type=int, default=2000, help="requests of the closed-loop saturation run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--speed-noise", type=float, default=0.0, metavar="CV",
                    help="give the cases' server a speed noise of this cv (correlation 2.6 s; the saturation run stays noiseless)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds allowed per case subprocess")
    ap.add_argument("--pure", action="store_true", help=f"run the cases on the pure-Python core ({PURE_ENV}=1)")
    ap.add_argument("--seed-benchmark", action="store_true", help="only the seed benchmark case")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.one:  # child: one case, one JSON line
        print(json.dumps(run_one(json.loads(args.one))), flush=True)
        return 0

    def info(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    host = host_info()
    info(f"# host: nproc={host['nproc']} cpu={host['cpu']!r} python={host['python']} ({host['platform']})")
    calibrations: dict[str, dict[str, Any]] = {}

    def calibration(arch: str) -> dict[str, Any]:
        if arch not in calibrations:
            c = calibrate(arch, args.calibration_requests, args.seed)
            calibrations[arch] = c
            info(
                f"# calibrate {arch}: closed loop, {c['calibration_users']} users, {c['calibration_requests']} requests"
                f" -> saturation {c['saturation_rps']:.4f} req/s ({c['saturation_output_throughput']:.0f} tok/s),"
                f" Poisson rate {args.load:g} x = {args.load * c['saturation_rps']:.4f} req/s"
                f" [{c['calibration_wall_s']:.2f} s wall]"
            )
        return calibrations[arch]

    if args.profile:
        profile(args, calibration(args.profile_arch))
        return 0

    rows = []
    suffix = "/pure" if args.pure else ""
    cases = [] if args.seed_benchmark else case_list(args)
    for arch, n in cases:
        c = calibration(arch)
        modes = [True] + ([False] if args.reference and n <= args.reference_max else [])
        if args.reference and n > args.reference_max:
            info(f"# {arch}/{_size_label(n)}: no reference run (above --reference-max {args.reference_max})")
        for fast in modes:
            spec = {
                "case": f"{arch}/{_size_label(n)}" + ("" if fast else "/reference") + suffix + (f"/noise{args.speed_noise:g}" if args.speed_noise else ""),
                "architecture": arch, "requests": n, "fast": fast, "seed": args.seed, "load": args.load,
                "speed_noise": args.speed_noise,
                "rate_per_s": args.load * c["saturation_rps"], "saturation_rps": c["saturation_rps"],
            }
            row = run_in_subprocess(spec, args.timeout, args.pure)
            rows.append(row)
            print(json.dumps(row) if args.json else readable(row), flush=True)
    if args.seed_benchmark or args.requests is None or args.all:
        spec = {"case": "seed_benchmark" + suffix, "architecture": "seed_benchmark"}
        row = run_in_subprocess(spec, args.timeout, args.pure)
        print(json.dumps(row) if args.json else readable(row), flush=True)
    if args.reference and not args.json:
        fast_rows = {(r["architecture"], r["requests"]): r for r in rows if r.get("fast") and "error" not in r}
        for r in rows:
            f = fast_rows.get((r["architecture"], r["requests"]))
            if r.get("fast") is False and f is not None and "error" not in r:
                print(
                    f"# {r['case']}: fast is {r['wall_s'] / f['wall_s']:.1f}x faster; "
                    f"output_throughput {f['output_throughput']:.1f} vs {r['output_throughput']:.1f}, "
                    f"p99_e2el_ms {f['p99_e2el_ms']:.1f} vs {r['p99_e2el_ms']:.1f} (fast vs reference)"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
