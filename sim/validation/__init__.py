"""Validation cases: scenarios whose metrics were measured on real servers, and how close we get.

A case is a YAML file (``calibration/validation/*.yaml``) naming the VALIDATION data it comes
from, its credibility, the assumptions made, a full scenario, and the measured values to
compare against::

    id: pyserver-t1
    source: calibration/data/this_machine/llama_cpp_python_server/summary.csv
    credibility: A
    notes: one request at a time; ...
    scenario: {name: ..., model: ..., hardware: ..., workload: ..., servers: [...], sweep: ...}
    expect:
      - {server: pyserver, sweep: {workload.arrival.users: 4}, metric: output_throughput,
         measured: 54.74, bound: 0.3}
      - metric: {ratio: {numerator: {sweep: {workload.arrival.users: 2}, metric: output_throughput_per_user},
                         denominator: {sweep: {workload.arrival.users: 1}, metric: output_throughput_per_user}}}
        measured: 0.80
        bound: 0.5

The relative error is ``(predicted - measured) / measured``; an expectation fails when its
absolute value exceeds ``bound`` (unless it is declared a ``known_failure``: reported as
XFAIL, and as XPASS, which fails the run, once it passes). Metrics are those of :func:`sim.metrics.summarize` plus the
derived ones in :data:`DERIVED_METRICS` (per-user throughput of a closed loop).

:mod:`.cases` reads and checks case files; :mod:`.run` runs them and summarises the errors (by
metric group and by engine); :mod:`.outputs` writes the JSON and the plot.
"""

from __future__ import annotations

from sim.validation.cases import (  # noqa: F401
    CASES_DIR,
    DERIVED_METRICS,
    ENGINE_TARGETS,
    METRIC_GROUPS,
    SUMMARY_METRICS,
    TARGETS,
    CaseError,
    CaseResult,
    Expectation,
    ExpectationResult,
    MetricRef,
    Ratio,
    RatioMetric,
    ValidationCase,
    load_case,
)
from sim.validation.outputs import write_outputs  # noqa: F401
from sim.validation.run import (  # noqa: F401
    by_engine,
    case_files,
    metric_group,
    run_case,
    run_validation,
    summarize_results,
)

__all__ = [
    "CASES_DIR",
    "CaseError",
    "CaseResult",
    "DERIVED_METRICS",
    "ENGINE_TARGETS",
    "Expectation",
    "ExpectationResult",
    "METRIC_GROUPS",
    "MetricRef",
    "Ratio",
    "RatioMetric",
    "SUMMARY_METRICS",
    "TARGETS",
    "ValidationCase",
    "by_engine",
    "case_files",
    "load_case",
    "metric_group",
    "run_case",
    "run_validation",
    "summarize_results",
    "write_outputs",
]
