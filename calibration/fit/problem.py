"""The least-squares problem of one group: residuals, identifiability of each parameter,
multi-start solving, standard errors and status."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from calibration.fit.points import GroupKey, Point, _Catalog, predict
from calibration.fit.settings import (
    EFFICIENCIES,
    EFFICIENCY_BOUNDS,
    IDENTIFY_RMS,
    MIN_GEMM_TOKENS,
    NEEDED_REL,
    NEEDED_RMS,
    OVERHEAD_UNIT,
    PARAMS,
    PRIORITY,
    RIDGE,
    SIG_DIGITS,
)
from sim.profiles import CostParams

# --------------------------------------------------------------------------------------------
# The fit
# --------------------------------------------------------------------------------------------


@dataclass
class _Problem:
    """A least-squares problem in scaled units (theta) over one or more groups' points.

    A group fit has one segment; a class prior's overhead fit pools several groups, each priced
    with its own catalog entries and weighted so that every group counts the same.
    """

    segments: list[tuple[_Catalog, list[Point]]]
    weights: np.ndarray
    """Weight of each point's squared relative error: sqrt(num_steps), normalised to mean 1."""
    measured: np.ndarray
    overhead_unit: dict[str, float]
    decode_batch_scale: dict[int, float] | None = None
    """Held fixed while the five parameters are fitted (a class prior's pooled overhead fit)."""

    @classmethod
    def build(cls, groups: Sequence[tuple[GroupKey, list[Point]]]) -> _Problem:
        weights = []
        for _, points in groups:
            w = np.sqrt(np.array([p.weight for p in points], dtype=float))
            weights.append(w / w.sum() * (len(points) if len(groups) == 1 else 1.0))
        w = np.concatenate(weights)
        w = w / w.mean()
        points = [p for _, pts in groups for p in pts]
        passes = np.array([p.measured_s / len(p.shapes) for p in points])
        seqs = np.array([np.mean([s.num_decode_seqs + s.num_prefill_seqs for s in p.shapes]) for p in points])
        unit = OVERHEAD_UNIT * float(np.median(passes))
        units = {"step_overhead_s": unit, "seq_overhead_s": unit / max(float(np.median(seqs)), 1.0)}
        segments = [(_Catalog.of(key), pts) for key, pts in groups]
        return cls(segments, w, np.array([p.measured_s for p in points]), units)

    @property
    def points(self) -> list[Point]:
        return [p for _, pts in self.segments for p in pts]

    def to_theta(self, params: CostParams) -> dict[str, float]:
        return {
            name: (math.log2(getattr(params, name)) if name in EFFICIENCIES
                   else getattr(params, name) / self.overhead_unit[name])
            for name in PARAMS
        }

    def to_params(self, theta: dict[str, float]) -> CostParams:
        values = {
            name: (2.0 ** theta[name] if name in EFFICIENCIES else max(theta[name], 0.0) * self.overhead_unit[name])
            for name in PARAMS
        }
        return CostParams(**values, decode_batch_scale=self.decode_batch_scale)

    def bounds(self, name: str) -> tuple[float, float]:
        if name in EFFICIENCIES:
            return math.log2(EFFICIENCY_BOUNDS[0]), math.log2(EFFICIENCY_BOUNDS[1])
        return 0.0, math.inf

    def predicted(self, params: CostParams) -> np.ndarray:
        return np.concatenate([predict(cat.cost(params), pts) for cat, pts in self.segments])

    def relative_errors(self, params: CostParams) -> np.ndarray:
        return self.predicted(params) / self.measured - 1.0

    def jacobian(self, theta: dict[str, float], names: Sequence[str], h: float = 0.05) -> np.ndarray:
        """d(weighted relative error)/d(theta) by central differences (one-sided at a bound)."""
        sw = np.sqrt(self.weights)
        cols = []
        for name in names:
            lo, hi = self.bounds(name)
            up, down = dict(theta), dict(theta)
            up[name] = min(theta[name] + h, hi)
            down[name] = max(theta[name] - h, lo)
            span = up[name] - down[name]
            diff = self.relative_errors(self.to_params(up)) - self.relative_errors(self.to_params(down))
            cols.append(sw * diff / span)
        return np.column_stack(cols) if cols else np.zeros((len(self.measured), 0))

    def covered(self) -> set[str]:
        """Parameters the points can speak to at all (see MIN_GEMM_TOKENS)."""
        names = set(PARAMS)
        if max(s.num_tokens for p in self.points for s in p.shapes) < MIN_GEMM_TOKENS:
            names.discard("compute_efficiency")
        return names


def _identifiable(problem: _Problem, theta: dict[str, float], candidates: Sequence[str]) -> list[str]:
    """Candidates (in PRIORITY order) that one unit moves by >= IDENTIFY_RMS after compensation."""
    names = [n for n in PRIORITY if n in candidates]
    jac = problem.jacobian(theta, names)
    n = jac.shape[0]
    basis: list[np.ndarray] = []
    free = []
    for j, name in enumerate(names):
        v = jac[:, j].copy()
        for q in basis:
            v -= q * float(q @ v)
        norm = float(np.linalg.norm(v))
        if norm / math.sqrt(n) >= IDENTIFY_RMS and len(free) < n:
            free.append(name)
            basis.append(v / norm)
    return free


def _stderr_units(problem: _Problem, theta: dict[str, float], free: Sequence[str]) -> dict[str, float]:
    """Standard error of each free parameter in theta units (inf when the normal matrix is singular;
    empty when the points determine the parameters exactly, i.e. no degrees of freedom are left)."""
    dof = len(problem.measured) - len(free)
    if not free or dof <= 0:
        return {}
    jac = problem.jacobian(theta, free)
    err = np.sqrt(problem.weights) * problem.relative_errors(problem.to_params(theta))
    try:
        cov = np.linalg.inv(jac.T @ jac) * float(err @ err) / dof
    except np.linalg.LinAlgError:
        return dict.fromkeys(free, math.inf)
    return {name: math.sqrt(max(float(cov[j, j]), 0.0)) for j, name in enumerate(free)}


GRID = {
    "bandwidth_efficiency": (0.05, 0.15, 0.4, 0.8, 1.1),
    "compute_efficiency": (0.02, 0.05, 0.15, 0.4, 0.9),
    "attention_efficiency": (0.02, 0.1, 0.4),
}
"""Start values tried for the free efficiencies (overheads start at the prior and at 0): the
roofline's max() hides a parameter whose branch is not active, so a local search from the
prior alone can miss the regime the data is in."""


def _grid_starts(
    problem: _Problem, free: list[str], theta0: dict[str, float], lo: np.ndarray, hi: np.ndarray, keep: int = 3
) -> list[np.ndarray]:
    """The ``keep`` best points of a coarse grid over the free parameters (by weighted error)."""
    axes = []
    for name in free:
        if name in EFFICIENCIES:
            axes.append([math.log2(v) for v in GRID[name]])
        else:
            axes.append(sorted({theta0[name], 0.0}))
    sw = np.sqrt(problem.weights)
    scored = []
    for combo in itertools.product(*axes):
        x = np.clip(np.array(combo, dtype=float), lo, hi)
        theta = {**theta0, **dict(zip(free, (float(v) for v in x), strict=True))}
        err = sw * problem.relative_errors(problem.to_params(theta))
        scored.append((float(err @ err), tuple(x)))
    scored.sort()
    return [np.array(x) for _, x in scored[:keep]]


def _solve(
    problem: _Problem, free: Sequence[str], theta0: dict[str, float], extra_start: dict[str, float] | None = None
) -> dict[str, float]:
    """Least squares over the free parameters, the others held at theta0 (the prior)."""
    free = list(free)
    if not free:
        return dict(theta0)
    sw = np.sqrt(problem.weights)
    lo = np.array([problem.bounds(n)[0] for n in free])
    hi = np.array([problem.bounds(n)[1] for n in free])
    prior_vec = np.array([theta0[n] for n in free])

    def theta_of(x: np.ndarray) -> dict[str, float]:
        return {**theta0, **dict(zip(free, (float(v) for v in x), strict=True))}

    def residuals(x: np.ndarray) -> np.ndarray:
        err = problem.relative_errors(problem.to_params(theta_of(x)))
        return np.concatenate([sw * err, RIDGE * (x - prior_vec)])

    starts = [np.clip(prior_vec, lo, hi), *_grid_starts(problem, free, theta0, lo, hi)]
    if extra_start is not None:
        starts.append(np.clip(np.array([extra_start[n] for n in free]), lo, hi))
    best = None
    for x0 in starts:
        sol = least_squares(residuals, x0, bounds=(lo, hi), method="trf", x_scale=1.0, max_nfev=2000)
        if best is None or sol.cost < best.cost:
            best = sol
    assert best is not None
    return theta_of(best.x)


def _round(value: float) -> float:
    if abs(value) < 1e-7:  # sub-0.1-microsecond overheads are zeros the optimiser did not reach
        return 0.0
    return float(f"{value:.{SIG_DIGITS}g}")


def _weighted_rms(problem: _Problem, theta: dict[str, float]) -> float:
    err = problem.relative_errors(problem.to_params(theta))
    return float(np.sqrt(np.sum(problem.weights * err * err) / len(err)))


def _select_and_solve(
    problem: _Problem, theta0: dict[str, float], candidates: Sequence[str]
) -> tuple[dict[str, float], list[str], dict[str, str]]:
    """Fit, choosing the free parameters; returns theta, the free ones and why each other is fixed.

    1. Coverage: compute_efficiency needs a pass of MIN_GEMM_TOKENS tokens.
    2. A first fit with every candidate free (held only by the ridge) finds the regime the data
       is in (a parameter hidden behind the roofline's max at the prior can matter at the fit).
    3. Structural test there (:func:`_identifiable`), refit, repeat until stable.
    4. Backward elimination: a free parameter is fixed at the prior when doing so (and refitting
       the others) raises the weighted RMS error by less than NEEDED_RMS (absolute) or
       NEEDED_REL of it: the points do not need it.
    """
    candidates = [n for n in PRIORITY if n in candidates]
    why = {n: "no pass in the data exercises it" for n in PARAMS if n not in problem.covered()}
    candidates = [n for n in candidates if n in problem.covered()]
    theta = _solve(problem, candidates, theta0)
    free = _identifiable(problem, theta, candidates)
    seen: list[list[str]] = []
    for _ in range(5):
        seen.append(list(free))
        theta = _solve(problem, free, theta0, extra_start=theta)
        again = _identifiable(problem, theta, candidates)
        if again == free or again in seen:
            break
        free = again
    rms_all = _weighted_rms(problem, theta)
    allowed = rms_all + max(NEEDED_RMS, NEEDED_REL * rms_all)
    for name in reversed([n for n in PRIORITY if n in free]):
        trial = [n for n in free if n != name]
        theta_t = _solve(problem, trial, theta0, extra_start=theta)
        rms_t = _weighted_rms(problem, theta_t)
        if rms_t <= allowed:
            why[name] = f"the prior fits as well (weighted RMS error {rms_t:.3f} fixed vs {rms_all:.3f} free)"
            free, theta = trial, theta_t
    for name in candidates:
        if name not in free:
            why.setdefault(name, "no measurable effect on the points once the others are fitted")
    return theta, free, why


def _se_text(name: str, se_units: float, problem: _Problem) -> str:
    if name in EFFICIENCIES:
        return f"x/÷ {2.0 ** se_units:.2f}" if math.isfinite(se_units) else "unbounded"
    return f"± {se_units * problem.overhead_unit[name] * 1e3:.3g} ms" if math.isfinite(se_units) else "unbounded"


def _fit_group(
    key: GroupKey, points: list[Point], prior: CostParams, candidates: Sequence[str] = PARAMS
) -> tuple[CostParams, dict[str, str], dict[str, float]]:
    problem = _Problem.build([(key, points)])
    theta0 = problem.to_theta(prior)
    theta, free, why = _select_and_solve(problem, theta0, candidates)
    for name in PARAMS:
        if name not in candidates:
            why[name] = "per-sequence decode costs are in decode_batch_scale"
    params = problem.to_params(theta)
    params = CostParams(**{n: _round(getattr(params, n)) for n in PARAMS})
    return params, _status(problem, params, free, why), _relative_stderr(problem, params, free)


def _status(problem: _Problem, params: CostParams, free: Sequence[str], why: dict[str, str]) -> dict[str, str]:
    status = {}
    theta = problem.to_theta(params)
    for name in PARAMS:
        if name not in free:
            status[name] = f"fixed at prior ({why.get(name, 'not fitted')})"
            continue
        lo, hi = problem.bounds(name)
        at_bound = theta[name] <= lo + 1e-6 or theta[name] >= hi - 1e-6
        status[name] = "fitted (at bound)" if at_bound else "fitted"
    return status


def _relative_stderr(problem: _Problem, params: CostParams, free: Sequence[str]) -> dict[str, float]:
    """Approximate relative standard error of each free parameter (from the Jacobian)."""
    se = _stderr_units(problem, problem.to_theta(params), free)
    out = {}
    for name, sd in se.items():
        if not math.isfinite(sd):
            continue
        if name in EFFICIENCIES:
            out[name] = round(2.0**sd - 1.0, 4)
        elif getattr(params, name) > 0:
            out[name] = round(sd * problem.overhead_unit[name] / getattr(params, name), 4)
    return out


