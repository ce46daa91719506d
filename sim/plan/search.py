"""The search of one candidate: bisect its sustainable load, then the fewest replicas.

Each candidate's search is a generator: it yields the loads (per replica) it wants judged and
receives their :class:`Verdict` (every seed simulated, means and confidence intervals), so the
driver in :mod:`sim.plan.planner` can run the simulations of several candidates at once on any
executor. The steps:

1. start at the analytic estimate; double (or halve) until the SLO holds at ``lo`` and breaks
   at ``hi``; bisect geometrically until ``hi / lo <= 1 + rel_tol`` (users: until ``hi - lo
   <= 1``). ``lo`` is the **maximum sustainable load per replica**, ``[lo, hi]`` its bracket;
2. ``N = ceil(target / lo)`` replicas (within the range); then, on the same seeds, N is raised
   while its per-replica load fails and lowered while N - 1 passes, so the answer is minimal:
   N meets the SLO and N - 1 does not (or N is the range's minimum).

A load passes when, for every bound, the mean over seeds of the metric is within the bound
(a NaN mean fails).
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Outcome", "Verdict", "judge", "search"]

MAX_STEPS = 12
"""Doublings or halvings tried before giving up on a bracket."""


@dataclass(frozen=True)
class Verdict:
    """One load judged over every seed."""

    load: float
    passed: bool
    means: dict[str, float]
    half_widths: dict[str, float]
    """Half-width of the confidence interval of each mean (NaN with one seed)."""
    runs: list[dict[str, Any]] = field(repr=False)


def _mean_ci(values: list[float], confidence: float) -> tuple[float, float]:
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2 or not all(math.isfinite(v) for v in values):
        return mean, math.nan
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    from scipy import stats  # (imported here: 0.6 s, and a plain run never needs it)

    return mean, float(stats.t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n)


def judge(load: float, runs: list[dict[str, Any]], bounds: dict[str, float], confidence: float,
          extra: tuple[str, ...] = ()) -> Verdict:
    """Means and intervals over seeds of the bounded metrics (and ``extra`` ones); the verdict."""
    means, halves = {}, {}
    for name in (*bounds, *extra):
        mean, half = _mean_ci([float(r.get(name, math.nan)) for r in runs], confidence)
        means[name], halves[name] = mean, half
    passed = all(math.isfinite(means[n]) and means[n] <= b for n, b in bounds.items())
    return Verdict(load, passed, means, halves, runs)


@dataclass
class Outcome:
    """What the search of one candidate found."""

    feasible: bool
    replicas: int | None
    max_load: float | None
    """Sustainable load per replica: the bracket's lower end, or the plan's load per replica if
    that passed and is higher (so headroom is never negative)."""
    bracket: tuple[float, float] | None
    plan_point: Verdict | None
    """The verdict at the chosen replica count's load."""
    below: Verdict | None
    """The verdict at one replica fewer (None at the range's minimum)."""
    reason: str = ""


Search = Generator[list[float], dict[float, Verdict], Outcome]


def search(estimate: float, target: float, per_replica: Any, integer: bool, rel_tol: float,
           min_replicas: int, max_replicas: int) -> Search:
    """The search of one candidate (see the module docstring). ``per_replica(N)`` is the load
    one replica carries when N share ``target``."""
    def fix(x: float) -> float:
        return float(max(1, round(x))) if integer else x

    def ask(x: float) -> Generator[list[float], dict[float, Verdict], Verdict]:
        got = yield [x]
        return got[x]

    x = fix(estimate)
    first = yield from ask(x)
    lo: float | None = x if first.passed else None
    hi: float | None = None if first.passed else x
    for _ in range(MAX_STEPS):
        if lo is not None and hi is not None:
            break
        x = fix(x * 2) if hi is None else fix(x / 2)
        if integer and hi is not None and x >= hi:
            x = hi - 1
        if x <= 0 or (integer and x < 1):
            break
        v = yield from ask(x)
        if v.passed:
            lo = x if lo is None else max(lo, x)
        else:
            hi = x if hi is None else min(hi, x)
    if lo is None:
        return Outcome(False, None, None, None, None, None, f"the SLO fails even at {x:.4g} per replica")
    if hi is None:
        hi = math.inf
    while math.isfinite(hi) and ((hi - lo > 1) if integer else (hi / lo > 1 + rel_tol)):
        mid = fix((lo + hi) / 2) if integer else math.sqrt(lo * hi)
        v = yield from ask(mid)
        lo, hi = (mid, hi) if v.passed else (lo, mid)
    n = min(max(math.ceil(target / lo - 1e-9), min_replicas), max_replicas)
    at = yield from ask(fix(per_replica(n)))
    while not at.passed and n < max_replicas:
        n += 1
        at = yield from ask(fix(per_replica(n)))
    if not at.passed:
        return Outcome(False, None, lo, (lo, hi), at, None,
                       f"{max_replicas} replicas (the range's maximum) do not meet the SLO")
    below = None
    while n > min_replicas:
        v = yield from ask(fix(per_replica(n - 1)))
        if not v.passed:
            below = v
            break
        n, at = n - 1, v
    # a load that passed at the plan is sustainable too (seeds differ in noise from load to load)
    return Outcome(True, n, max(lo, at.load), (lo, hi), at, below)
