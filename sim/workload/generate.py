"""Workloads generated in bulk before a run from a workload spec and a seed.

One ``SeedSequence(seed)`` is spawned into independent streams (arrivals, lengths, think
times), so every server in a scenario sees exactly the same requests (common random numbers)
and changing a server never shifts the workload.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sim.scenario import (
    ClosedLoopArrival,
    ConstantArrival,
    EmpiricalLength,
    FixedLength,
    GammaArrival,
    LengthSpec,
    LogNormalLength,
    PhasesArrival,
    PoissonArrival,
    RampArrival,
    ScenarioError,
    TraceArrival,
    UniformLength,
    WorkloadSpec,
)
from sim.scenario.base import MAX_TOKENS
from sim.traces import TraceError, read_length_table, read_trace
from sim.workload.table import INF, Workload

__all__ = ["generate_workload"]


def _streams(seed: int) -> tuple[np.random.Generator, ...]:
    return tuple(np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))


def _lengths(spec: LengthSpec, n: int, rng: np.random.Generator) -> np.ndarray:
    match spec:
        case FixedLength():
            values = np.full(n, spec.value)
        case UniformLength():
            values = rng.integers(spec.low, spec.high, n, endpoint=True)
        case LogNormalLength():
            mu = np.log(spec.mean) - spec.sigma**2 / 2
            values = np.clip(np.rint(rng.lognormal(mu, spec.sigma, n)), spec.min, spec.max)
        case EmpiricalLength():
            raise AssertionError("empirical lengths are sampled in pairs")
    return np.asarray(values, dtype=np.int64)


def _resolve(base_dir: str, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else Path(base_dir) / p


def _empirical_pair(
    prompt: EmpiricalLength | None, output: EmpiricalLength | None, n: int, rng: np.random.Generator, base_dir: str
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Sample rows of the length tables; one shared table keeps prompt/output correlation."""
    def table(spec: EmpiricalLength) -> tuple[np.ndarray, np.ndarray]:
        try:
            t = read_length_table(_resolve(base_dir, spec.path))
        except (TraceError, OSError) as err:
            raise ScenarioError(f"workload: empirical lengths from {spec.path}: {err}") from None
        return t.prompt_tokens, t.output_tokens

    def finish(values: np.ndarray, spec: EmpiricalLength) -> np.ndarray:
        out = np.maximum(1, np.rint(values * spec.scale)).astype(np.int64)
        return np.minimum(out, spec.max) if spec.max else out

    if prompt and output and prompt.path == output.path:
        p, o = table(prompt)
        rows = rng.integers(0, p.size, n)
        return finish(p[rows], prompt), finish(o[rows], output)
    p_out = o_out = None
    if prompt:
        p = table(prompt)[0]
        p_out = finish(p[rng.integers(0, p.size, n)], prompt)
    if output:
        o = table(output)[1]
        o_out = finish(o[rng.integers(0, o.size, n)], output)
    return p_out, o_out


def _sample_lengths(w: WorkloadSpec, n: int, rng: np.random.Generator, base_dir: str) -> tuple[np.ndarray, np.ndarray]:
    assert w.prompt_tokens is not None and w.output_tokens is not None
    emp_p = w.prompt_tokens if isinstance(w.prompt_tokens, EmpiricalLength) else None
    emp_o = w.output_tokens if isinstance(w.output_tokens, EmpiricalLength) else None
    p, o = _empirical_pair(emp_p, emp_o, n, rng, base_dir)
    if p is None:
        p = _lengths(w.prompt_tokens, n, rng)
    if o is None:
        o = _lengths(w.output_tokens, n, rng)
    return p, o


def _ramp_times(spec: RampArrival, rng: np.random.Generator) -> np.ndarray:
    """Non-homogeneous Poisson by inversion: unit-rate times s map to t with Lambda(t) = s,
    Lambda(t) = r0 t + (r1 - r0) t^2 / (2 T)."""
    r0, r1, T = spec.start_rate_per_s, spec.end_rate_per_s, spec.duration_s
    total = (r0 + r1) * T / 2
    s = np.cumsum(rng.exponential(1.0, int(total + 10 * np.sqrt(total) + 20)))
    s = s[s < total]
    a = (r1 - r0) / (2 * T)
    if abs(a) < 1e-15:
        return s / r0
    return (-r0 + np.sqrt(r0 * r0 + 4 * a * s)) / (2 * a)


def _phase_times(spec: PhasesArrival, rng: np.random.Generator) -> np.ndarray:
    out, start = [], 0.0
    for phase in spec.phases:
        k = phase.burstiness
        n = int(phase.rate_per_s * phase.duration_s * 1.5 + 20)
        t = start + np.cumsum(rng.gamma(k, 1.0 / (phase.rate_per_s * k), n))
        out.append(t[t < start + phase.duration_s])
        start += phase.duration_s
    return np.concatenate(out)


def _open_loop_times(w: WorkloadSpec, rng: np.random.Generator) -> np.ndarray:
    arrival = w.arrival
    if isinstance(arrival, RampArrival):
        return _ramp_times(arrival, rng)[: w.num_requests]
    if isinstance(arrival, PhasesArrival):
        return _phase_times(arrival, rng)[: w.num_requests]
    assert isinstance(arrival, PoissonArrival | GammaArrival | ConstantArrival)
    n = w.num_requests or max(1, int(np.ceil(arrival.rate_per_s * (w.duration_s or 0) * 1.2)) + 16)
    match arrival:
        case PoissonArrival():
            gaps = rng.exponential(1.0 / arrival.rate_per_s, n)
        case GammaArrival():
            k = arrival.shape
            gaps = rng.gamma(k, 1.0 / (arrival.rate_per_s * k), n)
        case ConstantArrival():
            gaps = np.full(n, 1.0 / arrival.rate_per_s)
    times = np.cumsum(gaps) - gaps[0]  # the first request arrives at t = 0
    if w.num_requests is None and w.duration_s is not None:
        times = times[times < w.duration_s]
    return times


def _trace_workload(
    w: WorkloadSpec, rng: np.random.Generator, base_dir: str, model_context_tokens: int | None
) -> Workload:
    spec = w.arrival
    assert isinstance(spec, TraceArrival)
    try:
        trace = read_trace(_resolve(base_dir, spec.path), spec.format)
        trace = trace.transform(
            speedup=spec.speedup, window_s=spec.window_s, length_scale=spec.length_scale,
            limit=spec.limit or w.num_requests, max_context_tokens=(
                model_context_tokens if spec.max_context_tokens == "model" else spec.max_context_tokens
            ),
        )
    except (TraceError, OSError, ValueError) as err:
        raise ScenarioError(f"workload.arrival.path: {err}") from None
    if trace.arrival_s is None:
        raise ScenarioError(
            f"workload.arrival.path: {spec.path} has no arrival times ({trace.format}); "
            "use it as lengths (prompt_tokens: {kind: empirical, path: ...}) with another arrival process"
        )
    times = trace.arrival_s
    if w.duration_s is not None:
        times = times[times < w.duration_s]
    n = times.size
    if spec.use_lengths:
        prompt, output = trace.prompt_tokens[:n], trace.output_tokens[:n]
    else:
        prompt, output = _sample_lengths(w, n, rng, base_dir)
    _check_token_counts(prompt, output)
    hashes = trace.hash_ids[:n] if trace.hash_ids is not None and spec.use_lengths else None
    return Workload(
        prompt.astype(np.int64), output.astype(np.int64), times,
        timeout_s=w.timeout_s or INF, block_hashes=hashes, hash_block_tokens=trace.hash_block_tokens or 0,
    )


def _check_token_counts(prompt: np.ndarray, output: np.ndarray, turns: int = 1) -> None:
    """Refuse lengths the records cannot count (32 bits), before the run starts."""
    if not prompt.size:
        return
    longest = int(prompt.max()) + int(output.max())
    if longest > MAX_TOKENS or turns * longest >= 2**31:
        what = f"{turns} turns of up to {longest} tokens" if turns > 1 else f"a request of {longest} tokens"
        raise ScenarioError(
            f"workload: {what} is more than servesim counts (prompt + output <= {MAX_TOKENS}, and a whole "
            "conversation < 2**31 tokens); lower the lengths (a max: on the length spec, or "
            "length_scale / max_context_tokens on a trace)" + (" or turns" if turns > 1 else "")
        )


def generate_workload(
    w: WorkloadSpec, seed: int, *, base_dir: str = ".", model_context_tokens: int | None = None
) -> Workload:
    """All requests of a run, drawn from ``seed``.

    Args:
        w: The workload spec (arrivals, lengths, timeout).
        seed: Root of the random streams (arrivals, lengths, think times).
        base_dir: Folder that relative trace and length-table paths are resolved against.
        model_context_tokens: The model's context length, for a trace's
            ``max_context_tokens: model`` (the only model fact a workload needs).
    """
    arrivals_rng, lengths_rng, think_rng, _ = _streams(seed)
    arrival = w.arrival
    if isinstance(arrival, TraceArrival):
        return _trace_workload(w, lengths_rng, base_dir, model_context_tokens)
    if isinstance(arrival, ClosedLoopArrival):
        n = w.num_requests or max(arrival.users, 1) * 4096
        prompt, output = _sample_lengths(w, n, lengths_rng, base_dir)
        think = arrival.think_time
        if think is not None and think.kind == "exponential" and think.mean_s > 0:
            think_s = think_rng.exponential(think.mean_s, n)
        else:
            think_s = np.full(n, think.mean_s if think is not None else arrival.think_time_s)
        _check_token_counts(prompt, output, arrival.turns)
        start_s = None
        if arrival.ramp_up_s == 0 and arrival.start_spread_s > 0:
            start_s = arrivals_rng.uniform(0.0, arrival.start_spread_s, arrival.users)
        return Workload(
            prompt, output, None, think_s, arrival.users, arrival.ramp_up_s, w.timeout_s or INF,
            turns=arrival.turns, start_s=start_s,
        )
    times = _open_loop_times(w, arrivals_rng)
    prompt, output = _sample_lengths(w, times.size, lengths_rng, base_dir)
    _check_token_counts(prompt, output)
    return Workload(prompt, output, times, timeout_s=w.timeout_s or INF)
