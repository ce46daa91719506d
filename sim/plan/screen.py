"""The analytic screen: what queueing theory says about a candidate before any simulation.

From the candidate's own cost model (the roofline that prices every pass in the simulator)
and the workload's mean prompt and output lengths:

* ``t_prefill``: one mean prompt's prefill pass; ``t_full``: a decode pass of ``c`` sequences
  (``c`` = slots, or vLLM's ``max_num_seqs`` capped by the KV pool) at mean context;
* **capacity** ``mu = 1 / (t_prefill + O t_full / c)`` requests/s per replica: every request's
  prefill is serial work, its O decode tokens share passes of c. No replica carries more, so
  ``ceil(lambda / mu)`` replicas is a floor, and the floor's price a lower bound on the
  candidate's cost (used to skip candidates that cannot beat a plan already found);
* **estimate** of the sustainable rate: an M/M/c queue of c lanes, each serving at ``mu/c``
  (:func:`sim.theory.erlang_c`), whose waiting-time quantile ``ln(C / (1 - q)) / (c mu/c -
  lambda)`` plus ``t_prefill`` meets each TTFT bound, and below 0.9 mu for the other bounds.
  It only seeds the bisection, which the simulations decide.

Closed-loop traffic: the estimate in users is the Little's-law population ``mu (R + Z)`` at
capacity (R the unloaded response time, Z the mean think time); it is not a bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sim.engines import ResolvedServer
from sim.servers.paged import PagedPolicy
from sim.servers.slots import SlotPolicy
from sim.shapes import BatchShape
from sim.theory import erlang_c

__all__ = ["Screen", "screen"]


@dataclass(frozen=True)
class Screen:
    """Analytic figures of one candidate (per replica)."""

    lanes: int
    t_prefill_s: float
    t_decode_1_s: float
    capacity: float
    """Upper bound on the load one replica carries (req/s; users: an estimate)."""
    estimate: float
    """Analytic sustainable load (seeds the bisection)."""
    reason: str = ""
    """Why the candidate cannot meet the SLO at any load ('' if it may)."""


def _lanes(resolved: ResolvedServer, context: float) -> int:
    policy = resolved.policy
    if isinstance(policy, SlotPolicy):
        return policy.num_slots
    if isinstance(policy, PagedPolicy):
        fit = policy.num_blocks * policy.block_size // max(int(context), 1)
        return max(1, min(policy.max_num_seqs, fit))
    return 1


def _mmc_wait_quantile(lam: float, lanes: int, lane_rate: float, q: float) -> float:
    if lam <= 0:
        return 0.0
    p_wait = erlang_c(lanes, lam / lane_rate)
    if p_wait <= 1 - q:
        return 0.0
    return math.log(p_wait / (1 - q)) / (lanes * lane_rate - lam)


def screen(resolved: ResolvedServer, prompt: float, output: float, bounds: dict[str, float],
           closed_loop: bool = False, think_s: float = 0.0) -> Screen:
    """The analytic figures of a resolved server for mean lengths ``prompt``/``output``."""
    cost = resolved.cost
    if cost is None:  # sampled whole-request service times: nothing to price passes with
        return Screen(1, 0.0, 0.0, math.inf, 1.0)
    p, o = max(round(prompt), 1), max(round(output), 1)
    lanes = _lanes(resolved, p + o)
    t_prefill = cost.step_time(BatchShape(num_prefill_tokens=p, num_prefill_seqs=1,
                                          prefill_attention_pairs=p * (p + 1) / 2))
    t_full = cost.step_time(BatchShape(num_decode_seqs=lanes, num_context_tokens=int(lanes * (p + o / 2))))
    t_one = cost.step_time(BatchShape(num_decode_seqs=1, num_context_tokens=int(p + o / 2)))
    capacity = 1.0 / (t_prefill + o * t_full / lanes)
    reason = ""
    for name, bound in bounds.items():
        if name.endswith("ttft_ms") and t_prefill * 1e3 > bound:
            reason = f"one prompt's prefill alone takes {t_prefill * 1e3:.0f} ms > {name} {bound:g}"
        if name.endswith(("tpot_ms", "itl_ms")) and t_one * 1e3 > bound:
            reason = f"one decode pass alone takes {t_one * 1e3:.1f} ms > {name} {bound:g}"
        if name.endswith("e2el_ms") and (t_prefill + o * t_one) * 1e3 > bound:
            reason = f"an unloaded mean request takes {(t_prefill + o * t_one) * 1e3:.0f} ms > {name} {bound:g}"
    if closed_loop:
        users = capacity * (t_prefill + o * t_one + think_s)
        return Screen(lanes, t_prefill, t_one, max(users, 1.0), max(float(math.floor(users)), 1.0), reason)
    estimate = 0.9 * capacity
    lane_rate = capacity / lanes
    for name, bound in bounds.items():
        if not name.endswith("ttft_ms") or bound <= t_prefill * 1e3:
            continue
        q = {"median": 0.5, "p90": 0.9, "p99": 0.99, "mean": 0.5}[name.split("_")[0]]
        lo, hi = 0.0, estimate
        for _ in range(50):
            mid = (lo + hi) / 2
            if (_mmc_wait_quantile(mid, lanes, lane_rate, q) + t_prefill) * 1e3 <= bound:
                lo = mid
            else:
                hi = mid
        estimate = min(estimate, lo)
    return Screen(lanes, t_prefill, t_one, capacity, max(estimate, capacity * 1e-3), reason)
