"""Fit each machine's speed noise (sim/noise.py) from its one-user server runs (calibration data).

At one user a server runs one request at a time, so the spread of its requests' time per output
token is the machine's own: the same passes, the same lengths, only the machine's speed varies.
servesim models that speed as a factor ``S(t)`` with mean 1 whose logarithm is an
Ornstein-Uhlenbeck process with correlation time ``tau``; a request's time per output token
averages ``S`` over its decode window of length ``D``. For such a process (small noise):

* the variance of a window's average is ``cv^2 g(D / tau)``, ``g(x) = 2 (x - 1 + e^-x) / x^2``;
* two windows of length ``D`` whose starts are ``L >= D`` apart correlate as
  ``r(tau) = tau^2 (1 - e^{-D/tau})^2 e^{-(L - D)/tau} / (D^2 g(D / tau))``.

With a per-request series (``*_c1_requests.csv``: consecutive requests of one closed-loop user,
no think time) the fit solves ``r(tau)`` = the series' lag-1 autocorrelation of the time per
output token for ``tau``, then ``cv`` = the series' coefficient of variation / ``sqrt(g(D / tau))``.
With only a run's summary (median and p90 of the request latency), the series' coefficient of
variation is read from the quantiles of a lognormal, ``ln(p90 / p50) / z_0.9``, and ``tau`` is
the median of the machines measured with series (recorded as borrowed).

A machine's profile takes the median of its points. No validation data is read; every point
records its source, sha256, hardware, date and formula. ``python -m calibration.fit_noise``
rewrites ``calibration/profiles/noise/fitted-noise.yaml``.
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import brentq

from calibration.measurements import DATA_DIR, file_sha256, repo_relative, write_fitted

__all__ = ["OUT_FILE", "NoisePoint", "fit_noise", "noise_points", "series_point", "window_corr", "write_noise"]

OUT_FILE = Path(__file__).resolve().parent / "profiles" / "noise" / "fitted-noise.yaml"
Z90 = 1.2815515655446004
"""Standard normal 0.9 quantile."""
TAU_RANGE = (1e-3, 1e4)
"""Correlation times the solver searches (seconds)."""

SERIES = [  # (machine, engine, file, date): one closed-loop user, per-request rows
    ("epyc-zen4-2c-vm", "llama.cpp", "sandbox_zen4/llama_cpp/np1_t1_c1_requests.csv", "2026-12-06"),
    ("epyc-zen4-2c-vm", "llama.cpp", "sandbox_zen4/llama_cpp/np4_t1_c1_requests.csv", "2026-12-06"),
    ("epyc-zen4-2c-vm", "vllm", "sandbox_zen4/vllm_cpu/vllm_t1_c1_requests.csv", "2026-12-06"),
]
SUMMARIES = [  # (machine, engine, file, date): one-user run summaries (quantiles only)
    ("epyc-zen5-2c-vm", "llama.cpp", "this_machine/llama_cpp/server_single_stream.csv", "2026-11-25"),
    ("epyc-zen5-2c-vm", "vllm", "this_machine/vllm_cpu/single_stream.csv", "2026-11-25"),
]


@dataclass(frozen=True)
class NoisePoint:
    """One machine's noise as one run shows it."""

    hardware: str
    engine: str
    series_cv: float
    """Coefficient of variation of the requests' time per output token (or latency, summaries)."""
    window_s: float
    """How long each request's averaging window lasts (its decode time, or latency)."""
    correlation_s: float | None
    """Correlation time (None: the run cannot tell; the machine borrows the pooled one)."""
    source: str
    sha256: str
    date: str
    formula: str


def _g(x: float) -> float:
    """Variance of a window average of a unit exponentially correlated process, window = x tau."""
    if x < 1e-6:
        return 1.0 - x / 3
    return 2.0 * (x - 1.0 + math.exp(-x)) / (x * x)


def window_corr(tau: float, window_s: float, lag_s: float) -> float:
    """Correlation of the averages over two windows of ``window_s`` whose starts are ``lag_s`` apart."""
    x = window_s / tau
    cov = (tau / window_s) ** 2 * (-math.expm1(-x)) ** 2 * math.exp(-(lag_s - window_s) / tau)
    return cov / _g(x)


def series_point(per_token_s: np.ndarray, window_s: float, lag_s: float) -> tuple[float, float, float, float]:
    """(cv, correlation_s, series cv, lag-1 autocorrelation) of a series of consecutive requests'
    time per output token (decode windows of ``window_s``, starts ``lag_s`` apart)."""
    y = np.asarray(per_token_s, dtype=float)
    cv_req = float(y.std(ddof=1) / y.mean())
    z = y - y.mean()
    rho = float(np.dot(z[:-1], z[1:]) / np.dot(z, z))
    lo, hi = TAU_RANGE
    f = lambda tau: window_corr(tau, window_s, lag_s) - rho  # noqa: E731
    if f(lo) >= 0:  # uncorrelated neighbours: as short as the search allows
        tau = lo
    elif f(hi) <= 0:  # correlated beyond any window: as long as it allows
        tau = hi
    else:
        tau = float(brentq(f, lo, hi, xtol=1e-6))
    return cv_req / math.sqrt(_g(window_s / tau)), tau, cv_req, rho


def _series_points() -> list[NoisePoint]:
    out = []
    for machine, engine, rel, date in SERIES:
        path = DATA_DIR / rel
        with path.open() as f:
            rows = [r for r in csv.DictReader(f) if r.get("status", "ok") == "ok"][1:]  # the first warms up
        e2e = np.array([float(r["e2e_s"]) for r in rows])
        ttft = np.array([float(r["ttft_s"]) for r in rows])
        tokens = np.array([float(r["tokens"]) for r in rows])
        per_token = (e2e - ttft) / (tokens - 1)
        window, lag = float(np.median(e2e - ttft)), float(np.median(e2e))
        cv, tau, cv_req, rho = series_point(per_token, window, lag)
        out.append(NoisePoint(
            machine, engine, round(cv_req, 5), round(window, 4), round(tau, 3), repo_relative(path),
            file_sha256(path)[:16], date,
            f"{len(rows)} requests after the first: time per output token cv {cv_req:.4f}, lag-1 autocorrelation "
            f"{rho:.3f}, decode window {window:.3f} s every {lag:.3f} s -> tau {tau:.2f} s, cv {cv_req:.4f} / "
            f"sqrt(g({window / tau:.3f})) = {cv:.4f}",
        ))
    return out


def _summary_points() -> list[NoisePoint]:
    out = []
    for machine, engine, rel, date in SUMMARIES:
        path = DATA_DIR / rel
        with path.open() as f:
            rows = [r for r in csv.DictReader(f) if int(r["concurrency"]) == 1]
        for r in rows:
            p50, p90 = float(r["e2e_p50_s"]), float(r["e2e_p90_s"])
            cv_req = math.log(p90 / p50) / Z90
            out.append(NoisePoint(
                machine, engine, round(cv_req, 5), p50, None, f"{repo_relative(path)} row {r['tag']}",
                file_sha256(path)[:16], date,
                f"request latency p50 {p50:.3f} s, p90 {p90:.3f} s: series cv ln(p90/p50)/z0.9 = {cv_req:.4f} "
                f"(window {p50:.3f} s; divided by sqrt(g(window / tau)) with the pooled tau)",
            ))
    return out


def noise_points() -> list[NoisePoint]:
    """Every point, series first (summaries' cv still to be corrected by the pooled tau)."""
    return _series_points() + _summary_points()


def fit_noise(points: list[NoisePoint] | None = None) -> list[dict[str, Any]]:
    """One profile per machine (median of its points), with provenance."""
    points = noise_points() if points is None else points
    taus = [p.correlation_s for p in points if p.correlation_s is not None]
    pooled = statistics.median(taus) if taus else None
    today = datetime.now(UTC).date().isoformat()
    profiles = []
    for machine in sorted({p.hardware for p in points}):
        mine = [p for p in points if p.hardware == machine]
        own = [p.correlation_s for p in mine if p.correlation_s is not None]
        tau = statistics.median(own) if own else pooled
        if tau is None:
            continue
        # the factor's cv: each point's request-level cv undone for its window's averaging
        cvs = [p.series_cv / math.sqrt(_g(p.window_s / (p.correlation_s or tau))) for p in mine]
        profiles.append({
            "id": f"noise-{machine}",
            "hardware": machine,
            "cv": round(statistics.median(cvs), 4),
            "correlation_s": round(tau, 3),
            "provenance": {
                "method": "median of the points (calibration/fit_noise.py)",
                "fit_date": today,
                "correlation_s": "this machine's own series" if own else
                f"borrowed: median of the machines measured with series ({pooled:.3f} s); this machine has summaries only",
                "cv_points": [round(c, 5) for c in cvs],
                "points": [asdict(p) for p in mine],
            },
        })
    return profiles


def write_noise(path: Path = OUT_FILE) -> list[dict[str, Any]]:
    """Fit and write the speed-noise profiles."""
    return write_fitted(path, fit_noise(), "calibration.fit_noise")


if __name__ == "__main__":
    for p in write_noise():
        print(f"{p['id']}: cv {p['cv'] * 100:.2f} %, correlation {p['correlation_s']:.2f} s "
              f"(points: {', '.join(f'{c * 100:.2f}' for c in p['provenance']['cv_points'])} %)")
