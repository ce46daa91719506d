"""Builders of tiny scenarios, and a theory-comparison assertion."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from sim.scenario import Scenario, parse_scenario


def _together(arrival: dict[str, Any]) -> dict[str, Any]:
    """Closed-loop users of a hand-worked timeline all start at t = 0 (start_spread_s: 0) unless
    the test says otherwise."""
    if arrival.get("kind") == "closed_loop" and "start_spread_s" not in arrival:
        return {**arrival, "start_spread_s": 0.0}
    return arrival


def tiny_scenario(
    server: dict[str, Any],
    *,
    arrival: dict[str, Any] | None = None,
    prompt: int | dict[str, Any] = 4,
    output: int | dict[str, Any] = 3,
    num_requests: int = 2,
    step_s: float | None = 1.0,
    seed: int = 0,
    timeout_s: float | None = None,
    model: str = "llama-3.1-8b",
    hardware: str = "h100-sxm",
    warmup: int = 0,
    **extra: Any,
) -> Scenario:
    """A scenario with one server; ``step_s`` gives every pass a constant cost (and then an engine
    preset runs without its fitted front end, so times count passes only)."""
    def length(v: int | dict[str, Any]) -> dict[str, Any]:
        return {"kind": "fixed", "value": v} if isinstance(v, int) else v

    srv = dict(server)
    if step_s is not None and "cost" not in srv:
        srv["cost"] = {"kind": "constant", "step_s": step_s}
        if "engine" in srv and "frontend" not in srv:
            srv["frontend"] = {"profile": "none"}
    workload: dict[str, Any] = {
        "arrival": _together(arrival) if arrival else {"kind": "constant", "rate_per_s": 1.0},
        "prompt_tokens": length(prompt),
        "output_tokens": length(output),
        "num_requests": num_requests,
        "warmup_requests": warmup,
    }
    if timeout_s is not None:
        workload["timeout_s"] = timeout_s
    return parse_scenario(
        {"name": "tiny", "seed": seed, "model": model, "hardware": hardware, "workload": workload,
         "servers": [srv], **extra}
    )


def assert_matches_theory(samples: Sequence[float], expected: float, *, z: float = 4.0, rel_bias: float = 0.03) -> None:
    """Replication means vs a closed form: z standard errors of noise plus a small bias."""
    mean = statistics.fmean(samples)
    stderr = statistics.stdev(samples) / math.sqrt(len(samples))
    slack = z * stderr + rel_bias * abs(expected)
    assert abs(mean - expected) <= slack, (
        f"simulated {mean:.4g} vs theory {expected:.4g} (allowed ±{slack:.2g}, n={len(samples)})"
    )


def drive(server: Any, workload: Any, num_requests: int | None = None) -> Any:
    """Run a multi-model server (``sim.multimodel`` / ``sim.llamaswap``) over ``workload`` from t = 0;
    its trimmed recorder."""
    import simpy

    from sim.recorder import Recorder
    from sim.workload import make_client

    env = simpy.Environment()
    recorder = Recorder(max(len(workload), 1))
    server.start(env, make_client(workload, num_requests if num_requests is not None else len(workload)), recorder)
    env.run()
    recorder.trim()
    return recorder
