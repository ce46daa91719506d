"""A point's result in the JSON layout of ``vllm bench serve --save-result --save-detailed``.

Keys, order and value types follow ``main_async`` and ``benchmark`` in ``vllm/benchmarks/serve.py``
(vLLM 0.11/0.12): ``date`` (``%Y%m%d-%H%M%S``, local time, as vLLM writes it), ``endpoint_type``,
``backend``, ``label``, ``model_id``, ``tokenizer_id``, ``num_prompts``, the traffic of *this*
point (``request_rate``, ``burstiness``, ``max_concurrency``), the aggregate metrics, the
per-request lists of ``--save-detailed`` and the statistics of ``--percentile-metrics
ttft,tpot,itl,e2el --metric-percentiles 90,95,99``. Where a list is empty vLLM writes 0 for its
statistics (``np.mean(x or 0)``), and so does this file. Everything servesim adds is under the
one key ``servesim``.

Per-request lists come from :func:`request_detail`, kept with the point's row: vLLM's
``ttfts`` (0.0 for a request that never saw a token), ``output_lens`` (0 for a failed request),
``errors`` ("" on success, else the HTTP reason or the client's error), empty
``generated_texts`` (the simulator generates no text) and ``itls``: servesim pools its
inter-token gaps over requests, so each successful request's ``itls`` are its own TPOT repeated
``output_len - 1`` times, which keeps its TTFT, TPOT and E2EL exact (``servesim.itls``
says so; the pooled ITL statistics are the ``*_itl_ms`` keys).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np

from sim.recorder import Recorder
from sim.requests import Status
from sim.scenario import Scenario
from sim.scenario.workload import (
    ClosedLoopArrival,
    ConstantArrival,
    GammaArrival,
    PoissonArrival,
    RampArrival,
)

__all__ = ["DETAIL_KEY", "bench_document", "bench_name", "point_bench", "request_detail", "traffic"]

DETAIL_KEY = "requests"
"""Key of a row that holds its per-request columns (kept out of tables, CSV and results.json)."""

ITL_LIMIT = 250_000
"""At most this many gaps get written as ``itls`` in a bench file (each is a JSON
float); above it the lists are empty and ``servesim.itls`` says why."""

ERRORS = {
    int(Status.REJECTED): "Service Unavailable",  # HTTP 503, as aiohttp's response.reason
    int(Status.CANCELLED): "Bad Request",  # HTTP 400: the engine refused or aborted the request
    int(Status.IN_FLIGHT): "still in flight when the run ended",
}
STAT_NAMES = ("ttft", "tpot", "itl", "e2el")
STAT_PREFIXES = ("mean", "median", "std", "p90", "p95", "p99")


DETAIL_LIMIT = 200_000
"""Runs with more requests keep no per-request lists (they travel with the row between processes
and into the point files): their bench files are what vLLM writes without ``--save-detailed``."""


def request_detail(rec: Recorder) -> dict[str, list[Any]] | None:
    """Per-request columns a bench file needs, as JSON-able lists (in arrival-id order); None
    above :data:`DETAIL_LIMIT` requests."""
    n = rec.num_arrived
    if n > DETAIL_LIMIT:
        return None
    return {
        "input_lens": rec.prompt_tokens[:n].tolist(),
        "generated": rec.generated[:n].tolist(),
        "status": rec.status[:n].tolist(),
        "start_s": rec.arrival_s[:n].tolist(),
        "first_token_s": rec.first_token_s[:n].tolist(),
        "end_s": rec.finish_s[:n].tolist(),
    }


def _lists(detail: dict[str, list[Any]], timeout_s: float | None) -> tuple[dict[str, list[Any]], str]:
    status = np.asarray(detail["status"], dtype=np.int64)
    ok = status == Status.COMPLETED
    generated = np.asarray(detail["generated"], dtype=np.int64)
    start, first, end = (np.asarray(detail[k], dtype=float) for k in ("start_s", "first_token_s", "end_s"))
    ttft = np.where(np.isfinite(first), first - start, 0.0)
    output = np.where(ok, generated, 0)
    tpot = np.where(output > 1, (end - first) / np.maximum(output - 1, 1), 0.0)
    total = int(np.sum(np.maximum(output - 1, 0)))
    if total <= ITL_LIMIT:
        itls = [[float(g)] * int(k - 1) if k > 1 else [] for g, k in zip(tpot, output, strict=True)]
        note = "each successful request's own TPOT repeated output_len - 1 times (servesim pools its gaps)"
    else:
        itls = [[] for _ in range(status.size)]
        note = f"left empty: {total} gaps exceed the limit of {ITL_LIMIT}"
    timeout = f"TimeoutError: the client gave up after {timeout_s:g} s" if timeout_s else "TimeoutError"
    errors = ["" if s == Status.COMPLETED else (timeout if s == Status.TIMEOUT else ERRORS.get(int(s), "failed"))
              for s in status.tolist()]
    return {
        "input_lens": [int(x) for x in detail["input_lens"]],
        "output_lens": output.tolist(),
        "ttfts": ttft.tolist(),
        "itls": itls,
        "generated_texts": [""] * status.size,
        "errors": errors,
    }, note


def _zero_nan(value: Any) -> Any:
    return 0.0 if isinstance(value, float) and math.isnan(value) else value


def _strict(value: Any) -> Any:
    """``value`` with NaN and infinite floats as None (strict JSON, as vLLM's files are)."""
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def bench_document(
    row: dict[str, Any], *, model_id: str, traffic: dict[str, Any], servesim: dict[str, Any],
    timeout_s: float | None, date: dt.datetime,
) -> dict[str, Any]:
    """The bench JSON of one point.

    ``row``: the point's metrics with its :data:`DETAIL_KEY` lists; ``traffic``: this point's
    ``request_rate`` (a number or ``"inf"``), ``burstiness`` and ``max_concurrency`` (or None);
    ``servesim``: servesim's own fields (cost profile, engine preset, ...), stored under one key.
    """
    if DETAIL_KEY in row:
        lists, itl_note = _lists(row[DETAIL_KEY], timeout_s)
    else:  # a row saved without its requests: the file is what vLLM writes without --save-detailed
        lists, itl_note = {}, f"no per-request lists: more than {DETAIL_LIMIT} requests, or a point saved without them"
    doc: dict[str, Any] = {
        "date": date.strftime("%Y%m%d-%H%M%S"),
        "endpoint_type": "openai",
        "backend": "openai",
        "label": row["server"],
        "model_id": model_id,
        "tokenizer_id": model_id,
        "num_prompts": row["arrived"],
        "request_rate": traffic["request_rate"],
        "burstiness": traffic["burstiness"],
        "max_concurrency": traffic["max_concurrency"],
        **{k: v for k, v in traffic.items() if k.startswith("ramp_up")},
        "duration": row["duration"],
        "completed": row["completed"],
        "failed": row["failed"],
        "total_input_tokens": row["total_input_tokens"],
        "total_output_tokens": row["total_output_tokens"],
        "request_throughput": row["request_throughput"],
        "request_goodput": row.get("request_goodput"),
        "output_throughput": row["output_throughput"],
        "total_token_throughput": row["total_token_throughput"],
        **lists,
        "max_output_tokens_per_s": row["max_output_tokens_per_s"],
        "max_concurrent_requests": row["max_concurrent_requests"],
    }
    for name in STAT_NAMES:
        for prefix in STAT_PREFIXES:
            doc[f"{prefix}_{name}_ms"] = _zero_nan(row[f"{prefix}_{name}_ms"])
    for key in ("duration", "request_throughput", "output_throughput", "total_token_throughput", "request_goodput"):
        doc[key] = _strict(doc[key])
    steady = {k.removeprefix("steady."): v for k, v in row.items() if k.startswith("steady.")}
    doc["servesim"] = _strict({
        "date_iso": date.isoformat(timespec="seconds"),
        "percentile_metrics": ",".join(STAT_NAMES),
        "metric_percentiles": "90,95,99",
        "itls": itl_note,
        "failures": {k: row[k] for k in ("rejected", "timeouts", "cancelled", "in_flight")},
        "wasted_output_tokens": row["wasted_output_tokens"],
        "steady": steady,
        **servesim,
    })
    return doc


def traffic(scenario: Scenario) -> dict[str, Any]:
    """vLLM's traffic keys for a point's arrival process.

    Poisson and gamma arrivals are ``--request-rate`` and ``--burstiness``; a constant rate is
    burstiness infinity (written ``Infinity``, as vLLM's ``json.dump`` does); closed-loop users
    are ``--max-concurrency`` with an infinite rate; a ramp is ``--ramp-up-strategy linear``.
    Arrivals vLLM cannot express (trace replay, phases) get ``request_rate: null``; the
    ``servesim.arrival`` key has the spec either way.
    """
    arrival = scenario.workload.arrival
    out: dict[str, Any] = {"request_rate": None, "burstiness": 1.0, "max_concurrency": None}
    if isinstance(arrival, PoissonArrival):
        out["request_rate"] = arrival.rate_per_s
    elif isinstance(arrival, GammaArrival):
        out.update(request_rate=arrival.rate_per_s, burstiness=arrival.shape)
    elif isinstance(arrival, ConstantArrival):
        out.update(request_rate=arrival.rate_per_s, burstiness=math.inf)
    elif isinstance(arrival, ClosedLoopArrival):
        out.update(request_rate="inf", max_concurrency=arrival.users)
    elif isinstance(arrival, RampArrival):
        out.update(request_rate="inf", ramp_up_strategy="linear", ramp_up_start_rps=arrival.start_rate_per_s,
                   ramp_up_end_rps=arrival.end_rate_per_s)
    return out


def _servesim_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("servesim")
    except PackageNotFoundError:  # run from a checkout without installing
        return "unknown (not installed)"


def point_bench(scenario: Scenario, row: dict[str, Any], date: dt.datetime) -> dict[str, Any]:
    """The bench JSON of one point of ``scenario`` (the scenario *at that point*: its swept
    values applied) from its result row."""
    spec = next((s for s in scenario.servers if s.label == row["server"]), None)
    model = scenario.model if isinstance(scenario.model, str) else (scenario.model.id or "hf_config")
    notes = row.get("notes", {})
    fields = {
        "simulator": "servesim",
        "servesim_version": _servesim_version(),
        "scenario": scenario.name,
        "seed": scenario.seed,
        "hardware": scenario.hardware if isinstance(scenario.hardware, str) else "inline spec",
        "server": row["server"],
        "engine": row["engine"],
        "engine_version": getattr(spec, "version", None),
        "cost_profile": notes.get("cost_profile", "none: hand-set or class prior (see notes)"),
        "notes": notes,
        "sweep": row["sweep"],
        "arrival": scenario.workload.arrival.model_dump(mode="json"),
        "timeout_s": scenario.workload.timeout_s,
        "slo": scenario.slo.model_dump(mode="json") if scenario.slo else None,
    }
    return bench_document(row, model_id=model, traffic=traffic(scenario), servesim=fields,
                          timeout_s=scenario.workload.timeout_s, date=date)


def bench_name(row: dict[str, Any]) -> str:
    """File name of a point's bench JSON: the server and its sweep value(s)."""
    tag = "_".join(f"{k.split('.')[-1]}{v}" for k, v in row["sweep"].items())
    return f"{row['server']}{'_' + tag if tag else ''}.json".replace("/", "-")
