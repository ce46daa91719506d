"""Size limits: a run's memory estimated before anything is allocated, and refused when too big.

servesim holds every request of a run in numpy columns (the workload, then the records), so a
run's memory is about proportional to its requests; closed-loop users, slots and the decode
set's per-block counters add a little each. ``check_size`` estimates the peak from the scenario
and the resolved servers alone (a trace counts by its file size) and raises ScenarioError with
the estimate, the limit and what to lower when the estimate is over the limit. The limit is half
the machine's physical memory, or ``SERVESIM_MAX_MEMORY_GIB`` when set.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

from sim.engines import ResolvedServer
from sim.scenario import (
    ClosedLoopArrival,
    ConstantArrival,
    EmpiricalLength,
    GammaArrival,
    PhasesArrival,
    PoissonArrival,
    RampArrival,
    Scenario,
    ScenarioError,
    TraceArrival,
    WorkloadSpec,
)
from sim.servers.paged import PagedPolicy
from sim.servers.slots import SlotPolicy

__all__ = ["BYTES_PER_REQUEST", "check_size", "estimate_bytes", "memory_limit_bytes", "request_count"]

GIB = 1 << 30
BYTES_PER_REQUEST = 400
"""Peak bytes per request: the README's measured 257 B of peak RSS growth per request (1M
requests, ``bench/speed.py``) plus room for the metrics' temporary arrays."""
BYTES_PER_USER = 400
"""A closed-loop user: its heap entry and per-user conversation state."""
BYTES_PER_SLOT = 200
"""A slot of a slot server: its free-list entry and cached prefix."""
BYTES_PER_BLOCK_TOKEN = 8
"""The decode set keeps one counter per position in a KV block (``block_size`` of them)."""
TRACE_BYTES_PER_FILE_BYTE = 12
"""Parsing a trace holds its text and Python objects per cell: about this many bytes per byte of
file (Mooncake's hash-id lists are the worst case)."""


def memory_limit_bytes() -> float:
    """Half the physical memory, or ``SERVESIM_MAX_MEMORY_GIB`` GiB."""
    env = os.environ.get("SERVESIM_MAX_MEMORY_GIB")
    if env:
        try:
            return float(env) * GIB
        except ValueError:
            pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2
    except (ValueError, OSError, AttributeError):
        return 8.0 * GIB


def _finite(x: float) -> float:
    return x if math.isfinite(x) else math.inf


def _file_size(path: Path) -> float:
    try:
        return float(path.stat().st_size)
    except OSError:
        return 0.0


def request_count(workload: WorkloadSpec, resolve: Callable[[str], Path]) -> tuple[float, float]:
    """(requests the run allocates, bytes for reading its files) for a workload spec, as
    generate_workload sizes its draws (before any cut to num_requests)."""
    paths = {spec.path for spec in (workload.prompt_tokens, workload.output_tokens) if isinstance(spec, EmpiricalLength)}
    files = sum(_file_size(resolve(path)) for path in paths) * TRACE_BYTES_PER_FILE_BYTE
    n, trace = _requests(workload, resolve)
    return n, files + trace


def _requests(workload: WorkloadSpec, resolve: Callable[[str], Path]) -> tuple[float, float]:
    a, n_max = workload.arrival, workload.num_requests
    match a:
        case ClosedLoopArrival():
            return float(n_max or a.users * 4096), 0.0
        case PoissonArrival() | GammaArrival() | ConstantArrival():
            return (float(n_max) if n_max else _finite(a.rate_per_s * (workload.duration_s or 0) * 1.2 + 16)), 0.0
        case RampArrival():
            total = _finite((a.start_rate_per_s + a.end_rate_per_s) * a.duration_s / 2)
            return total + 10 * math.sqrt(total) + 20, 0.0
        case PhasesArrival():
            return sum(_finite(p.rate_per_s * p.duration_s * 1.5 + 20) for p in a.phases), 0.0
        case TraceArrival():
            size = _file_size(resolve(a.path))
            rows = size / 4  # a row has at least 4 bytes ("0,1,1\n" is 6)
            return min(rows, float(a.limit or n_max or rows)), size * TRACE_BYTES_PER_FILE_BYTE
    return 0.0, 0.0


def estimate_bytes(scenario: Scenario, resolved: list[ResolvedServer]) -> dict[str, float]:
    """Peak memory of one point of the scenario, by part (bytes)."""
    n, files = request_count(scenario.workload, scenario.resolve)
    arrival = scenario.workload.arrival
    slots = [r.policy.num_slots for r in resolved if isinstance(r.policy, SlotPolicy)]
    blocks = [r.policy.block_size for r in resolved if isinstance(r.policy, PagedPolicy)]
    return {
        "requests": n * BYTES_PER_REQUEST,
        "files": files,
        "users": arrival.users * BYTES_PER_USER if isinstance(arrival, ClosedLoopArrival) else 0.0,
        "slots": max(slots, default=0) * BYTES_PER_SLOT,
        "kv blocks": max(blocks, default=0) * BYTES_PER_BLOCK_TOKEN,
    }


def _gib(x: float) -> str:
    return f"{x / GIB:.3g} GiB" if math.isfinite(x) else "unbounded"


def check_size(scenario: Scenario, resolved: list[ResolvedServer]) -> None:
    """Raise ScenarioError when a point of the scenario would need more memory than the limit."""
    parts = estimate_bytes(scenario, resolved)
    total, limit = sum(parts.values()), memory_limit_bytes()
    if total <= limit:
        return
    w, biggest = scenario.workload, max(parts, key=lambda k: parts[k])
    room = lambda per: f"{max(int(limit / per), 1):,}"
    fix = {
        "requests": f"workload.num_requests (num_requests={w.num_requests}, duration_s={w.duration_s}): "
                    f"at most about {room(BYTES_PER_REQUEST)} requests fit",
        "files": "the trace or length file: cut it (window_s on a trace keeps part of it)",
        "users": f"workload.arrival.users={getattr(w.arrival, 'users', '')}: at most about {room(BYTES_PER_USER)}",
        "slots": f"the servers' parallel / num_parallel ({int(parts['slots'] / BYTES_PER_SLOT):,}): "
                 f"at most about {room(BYTES_PER_SLOT)}",
        "kv blocks": "block_size",
    }[biggest]
    breakdown = ", ".join(f"{k} {_gib(v)}" for k, v in parts.items() if v >= total / 100)
    raise ScenarioError(
        f"workload: this run would need about {_gib(total)} of memory ({breakdown}), over the limit of "
        f"{_gib(limit)} (half this machine's memory; SERVESIM_MAX_MEMORY_GIB sets it); lower {fix}"
    )
