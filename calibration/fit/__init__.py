"""Fit the roofline cost model's engine efficiencies to measured step times.

One fit per group of measurements sharing (engine, hardware, model, weight format, threads):
the five :class:`~sim.profiles.CostParams` are found by ``scipy.optimize.least_squares`` on the
relative error of every measured pass time, each row's squared error weighted by
``sqrt(num_steps)`` (the number of passes it averages: a mean of many short passes is more
precise than one pass, but not n times more, since the machine's drift (±8 %) does not average
out). A measured pass is predicted by the very
:class:`~sim.costs.RooflineStepCost` the simulator builds (:func:`sim.engines.build_cost`, with
every parameter given as an override), so a fitted profile means the same thing in a scenario.
A :class:`~calibration.measurements.LatencyMeasurement` (a request-level total) is predicted as
the sum of its passes.

Identifiability. Parameters the data cannot identify are **fixed at the prior** (the hand
prior of ``calibration/profiles/priors.yaml`` that applies to the group), never guessed:

* parameters are tried in the order of :data:`PRIORITY`; each is kept free when doubling it
  (efficiencies) or adding a quarter of the group's median pass time (``step_overhead_s``; for
  ``seq_overhead_s`` a quarter of the median time per sequence) changes the weighted
  predictions by at least :data:`IDENTIFY_RMS` (RMS of relative change) *after* the
  parameters already kept have compensated as best they can (Gram-Schmidt on the Jacobian).
  A parameter that only acts together with another one (``seq_overhead_s`` when every pass
  holds one sequence) or not at all (attention efficiency when all contexts are short) is
  therefore fixed. The test is made at the prior, then repeated at the fit until it is stable.
* the free parameters also carry a weak ridge penalty (:data:`RIDGE` per unit of the scales
  above) toward the prior, which only matters in nearly degenerate directions.

Efficiencies are bounded to [0.01, 1.2] (a fit at 1.2 says the catalog's peak is too low, and
the report flags it), overheads to >= 0.

Groups with data also give **class priors**: per (engine, hardware kind), the median of each
parameter over the groups where it was fitted (else the hand prior), written to
``fitted-priors.yaml`` so that hardware nobody measured gets a documented prediction. Ollama
runs llama.cpp's kernels (ENGINES.md A.1), so its class priors copy llama.cpp's.

Fits are cached: each profile records an ``input_hash`` over the measurements, the catalog
entries, the prior and the code (this module and the cost model); a fit whose hash matches the
existing profile's is not redone unless ``force``. Vidur's profiles are skipped (see
:data:`SKIPPED_ENGINES`).

The package is split by reason to change: :mod:`.settings` (what is fitted, bounds and
tolerances), :mod:`.points` (measurements -> points, predicted by the simulator's own cost model),
:mod:`.problem` (the least-squares problem: residuals, identifiability, solving),
:mod:`.priors` (hand priors and class priors), :mod:`.profiles` (fitting groups, caching by input
hash, writing profile files).
"""

from __future__ import annotations

from calibration.fit.points import (  # noqa: F401
    FitReport,
    GroupKey,
    LoadedInputs,
    Point,
    _Catalog,
    load_points,
    predict,
    roofline_cost,
)
from calibration.fit.priors import class_priors, hand_prior  # noqa: F401
from calibration.fit.problem import GRID  # noqa: F401
from calibration.fit.profiles import FitRun, _code_hash, _fit, fit_all, fit_profile, input_hash  # noqa: F401
from calibration.fit.settings import (  # noqa: F401
    DEFAULT_INPUTS,
    EFFICIENCIES,
    EFFICIENCY_BOUNDS,
    FIT_VERSION,
    HAND_PRIORS,
    IDENTIFY_RMS,
    LLAMA_CPP_UBATCH,
    MIN_GEMM_TOKENS,
    NEEDED_REL,
    NEEDED_RMS,
    OLLAMA_COPIES,
    OVERHEAD_UNIT,
    PARAMS,
    PRIORITY,
    PRIORS_FILE,
    PROFILES_DIR,
    PUBLISHED_LATENCY_CASES,
    RIDGE,
    SIG_DIGITS,
    SKIPPED_ENGINES,
)

__all__ = [
    "DEFAULT_INPUTS",
    "EFFICIENCIES",
    "EFFICIENCY_BOUNDS",
    "FIT_VERSION",
    "FitReport",
    "FitRun",
    "GRID",
    "GroupKey",
    "HAND_PRIORS",
    "IDENTIFY_RMS",
    "LLAMA_CPP_UBATCH",
    "LoadedInputs",
    "MIN_GEMM_TOKENS",
    "NEEDED_REL",
    "NEEDED_RMS",
    "OLLAMA_COPIES",
    "OVERHEAD_UNIT",
    "PARAMS",
    "PRIORITY",
    "PRIORS_FILE",
    "PROFILES_DIR",
    "PUBLISHED_LATENCY_CASES",
    "Point",
    "RIDGE",
    "SIG_DIGITS",
    "SKIPPED_ENGINES",
    "class_priors",
    "fit_all",
    "fit_profile",
    "hand_prior",
    "input_hash",
    "load_points",
    "predict",
    "roofline_cost",
]
