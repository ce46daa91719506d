"""The single-queue server against closed forms: M/M/1, M/D/1, M/G/1 (Pollaczek-Khinchine), M/M/c.

Independent replications with fixed seeds and a warm-up; the tolerance is noise (z standard
errors) plus a small bias, so pass/fail is deterministic and the test means something.
"""

from __future__ import annotations

import numpy as np
import pytest

from sim.distributions import Affine, Deterministic, Distribution, Exponential, Gamma, Uniform
from sim.requests import Status
from sim.simulation import run_server
from sim.theory import erlang_c, mg1, mmc
from tests.helpers import assert_matches_theory, tiny_scenario

N_REQUESTS = 12_000
WARMUP = 1_000
SEEDS = range(8)


def _waits(server: dict, rate: float, seed: int, **kw) -> np.ndarray:
    sc = tiny_scenario(
        server, arrival={"kind": "poisson", "rate_per_s": rate}, num_requests=N_REQUESTS, step_s=None,
        seed=seed, warmup=WARMUP, **kw,
    )
    rec = run_server(sc).recorder
    done = rec.status == Status.COMPLETED
    assert done.all()
    return (rec.started_s - rec.arrival_s)[WARMUP:]


def _sampled(kind: str, mean: float, cv: float = 1.0) -> dict:
    return {"kind": "sampled", "distribution": {"kind": kind, "mean_s": mean, "cv": cv}}


@pytest.mark.parametrize(
    ("kind", "cv", "service"),
    [("exponential", 1.0, Exponential(1.0)), ("deterministic", 0.0, Deterministic(1.0)), ("gamma", 0.5, Gamma(4.0, 0.25))],
    ids=["M/M/1", "M/D/1", "M/G/1-gamma"],
)
def test_single_queue_wait_matches_pollaczek_khinchine(kind: str, cv: float, service: Distribution) -> None:
    rate = 0.6
    server = {"kind": "single_queue", "num_parallel": 1, "cost": _sampled(kind, 1.0, cv)}
    waits = [float(np.mean(_waits(server, rate, seed))) for seed in SEEDS]
    assert_matches_theory(waits, mg1(rate, service).wait_s)


def test_four_slots_match_erlang_c() -> None:
    rate, c = 2.8, 4  # rho = 0.7
    server = {"kind": "single_queue", "num_parallel": c, "cost": _sampled("exponential", 1.0)}
    runs = [_waits(server, rate, seed) for seed in SEEDS]
    assert_matches_theory([float(np.mean(w > 1e-12)) for w in runs], erlang_c(c, rate / 1.0))
    assert_matches_theory([float(np.mean(w)) for w in runs], mmc(rate, 1.0, c).wait_s)


def test_token_level_serial_decode_is_mg1_with_affine_service() -> None:
    # Serial decoding with a linear step cost and no attention term: a request with N output
    # tokens costs S = (a + c P) + (N - 1)(a + b) -- affine in N, so E[S], E[S^2] follow from
    # the moments of N and Pollaczek-Khinchine gives the exact mean wait.
    a, b, c, prompt = 0.004, 0.001, 0.0001, 64
    cost = {"kind": "linear", "overhead_s": a, "decode_s_per_seq": b, "prefill_s_per_token": c}
    service = Affine(Uniform(8, 120, integer=True), offset=a + c * prompt - (a + b), scale=a + b)
    rate = 0.6 / service.mean
    server = {"kind": "serial_decode", "parallel": 1, "ctx_size": 8192, "cost": cost}
    waits = [
        float(np.mean(_waits(server, rate, seed, prompt=prompt, output={"kind": "uniform", "low": 8, "high": 120})))
        for seed in SEEDS
    ]
    assert_matches_theory(waits, mg1(rate, service).wait_s)


def test_littles_law_in_steady_state() -> None:
    rate = 0.6
    server = {"kind": "single_queue", "num_parallel": 1, "cost": _sampled("exponential", 1.0)}
    sc = tiny_scenario(server, arrival={"kind": "poisson", "rate_per_s": rate}, num_requests=N_REQUESTS,
                       step_s=None, seed=3)
    rec = run_server(sc).recorder
    events = np.concatenate([np.stack([rec.arrival_s, np.ones(rec.arrival_s.size)], 1),
                             np.stack([rec.finish_s, -np.ones(rec.finish_s.size)], 1)])
    events = events[np.lexsort((events[:, 1], events[:, 0]))]
    in_system = np.cumsum(events[:, 1])
    area = float(np.sum(in_system[:-1] * np.diff(events[:, 0])))
    horizon = float(events[-1, 0] - events[0, 0])
    lam = rec.arrival_s.size / horizon
    sojourn = float(np.mean(rec.finish_s - rec.arrival_s))
    assert area / horizon == pytest.approx(lam * sojourn, rel=1e-9)  # sample-path identity
    assert area / horizon == pytest.approx(mg1(rate, Exponential(1.0)).num_in_system, rel=0.15)
