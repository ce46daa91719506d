"""Per-request costs outside the forward pass: the engines' front ends, and where each is paid.

An engine is more than its forward passes. Before the engine sees a request, its API layer
parses the HTTP request, renders the chat template and tokenises the prompt (Ollama also reads
model metadata and hops to its runner over loopback HTTP); while it decodes, every step samples
each sequence and hands the token to the API layer, which detokenises it and streams it to the
client. ``SPECULATIVE_AND_FRONTEND.md`` (section B) describes the three engines. servesim prices
these costs with one :class:`FrontendCost` per engine, fitted from request-level measurements
(``calibration/fit_frontend.py``: a server's single-user TTFT minus the engine's own prefill
time, its TPOT minus the engine's own decode step) and applied to every request:

* ``request_s`` is paid **before** the engine sees the request and does **not** occupy the
  engine (the API layer runs beside the engine loop): llama-server's HTTP threads and Ollama's
  goroutines handle requests in parallel, so it is a pure delay; vLLM's API server is one
  asyncio process (tokenisation in a one-worker thread pool, vLLM issue #25301), so with
  ``serial`` the requests queue for it first-come first-served (an M/D/1 stage in front of the
  engine). A single-user TTFT cannot tell the work before the first pass from the work after
  it (first-token streaming), so both are charged here, before the pass; at one user the two are
  indistinguishable, and under load the delay before the engine is the one that shifts queueing.
* ``token_s`` is paid **inside** the engine loop, per sampled sequence and pass (llama-server
  and Ollama's runners sample every slot on the main thread and post its result before the next
  batch; llama.cpp issue #27050); ``step_s`` once per pass (vLLM's engine core serialises the
  step's outputs). Both are added to the cost model's per-sequence / per-pass overheads by
  :mod:`sim.engines`, so they lengthen every step and every request's TPOT.

The hot loop is untouched when there is no delay: :func:`wrap_client` returns the client itself,
and the in-engine costs are two additions made once when the cost model is built. A front-end
delay puts :class:`FrontendClient` between the client and the server; it is called where the
client was (once per pass run) and does O(1) work per request.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import yaml

from sim.requests import Request

__all__ = [
    "FRONTEND_NONE",
    "FrontendClient",
    "FrontendCost",
    "FrontendProfile",
    "load_frontend_profiles",
    "select_frontend",
    "wrap_client",
]

INF = float("inf")


@dataclass(frozen=True)
class FrontendCost:
    """Front-end costs of one server (seconds); all zero = the engine alone."""

    id: str = "none"
    """Which profile (or override) the numbers come from; shown in a run's notes."""
    request_s: float = 0.0
    """Per request, before the engine sees it (HTTP, template, tokenisation, first-token write)."""
    serial: bool = False
    """``request_s`` is served by one worker, first come first served (vLLM's API process)."""
    token_s: float = 0.0
    """Per sampled sequence per pass, inside the engine loop (sampling, result posting)."""
    step_s: float = 0.0
    """Per pass, inside the engine loop (output serialisation of the engine core)."""

    @property
    def is_zero(self) -> bool:
        """No cost at all: the run is exactly the engine's."""
        return not (self.request_s or self.token_s or self.step_s)

    def describe(self) -> str:
        """One line for a run's notes."""
        mode = "FIFO" if self.serial else "parallel"
        return (f"{self.id}: request {self.request_s * 1e3:.2f} ms ({mode}), token {self.token_s * 1e3:.3f} ms/seq, "
                f"step {self.step_s * 1e3:.3f} ms")


FRONTEND_NONE = FrontendCost()


@dataclass(frozen=True)
class FrontendProfile:
    """A fitted front-end cost and what it applies to (``calibration/profiles/frontend/``)."""

    cost: FrontendCost
    engine: str
    hardware: str = "*"
    """``cpu``, ``gpu`` (any accelerator that is not a CPU), ``*``, or one machine's catalog id
    (fitted on that machine's own server runs; it outranks the class profile there)."""
    min_version: str | None = None
    """First engine version it applies to (inclusive), or None."""
    max_version: str | None = None
    """Last engine version it applies to (exclusive), or None."""
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)


def _version(text: str) -> tuple[int, ...]:
    """``0.6.7`` -> (0, 6, 7); ``b6000`` -> (6000,) (llama.cpp build numbers)."""
    digits = "".join(c if c.isdigit() else " " for c in text).split()
    return tuple(int(d) for d in digits)


def _frontend_dir() -> Path:
    return Path(str(resources.files("calibration") / "profiles" / "frontend"))


@lru_cache(maxsize=4)
def load_frontend_profiles(path: str | None = None) -> tuple[FrontendProfile, ...]:
    """The fitted front-end profiles (all files of the shipped folder, or one file)."""
    files = [Path(path)] if path else sorted(_frontend_dir().glob("*.yaml"))
    out = []
    for f in files:
        data = yaml.safe_load(f.read_text()) or {}
        for e in data.get("profiles", []):
            cost = FrontendCost(e["id"], float(e.get("request_s", 0.0)), bool(e.get("serial", False)),
                                float(e.get("token_s", 0.0)), float(e.get("step_s", 0.0)))
            out.append(FrontendProfile(cost, e["engine"], e.get("hardware", "*"), e.get("min_version"),
                                       e.get("max_version"), e.get("provenance", {})))
    return tuple(out)


def select_frontend(engine: str, version: str, hardware_kind: str, name: str | None = None,
                    hardware_id: str | None = None) -> FrontendCost:
    """The named front-end profile, else the most specific one for this engine, version and
    hardware: this machine's own (``hardware_id``), else its class (``cpu`` / ``gpu``);
    :data:`FRONTEND_NONE` when none applies."""
    profiles = load_frontend_profiles()
    if name is not None:
        if name == "none":
            return FRONTEND_NONE
        for p in profiles:
            if p.cost.id == name:
                return p.cost
        known = ", ".join(["none", *(p.cost.id for p in profiles)])
        raise ValueError(f"unknown front-end profile {name!r}; known: {known}")
    cls = "cpu" if hardware_kind == "cpu" else "gpu"
    v = _version(version) if version else ()
    best: tuple[int, FrontendCost] | None = None
    for p in profiles:
        if p.engine != engine or p.hardware not in ("*", cls, hardware_id):
            continue
        if p.min_version and (not v or v < _version(p.min_version)):
            continue
        if p.max_version and (not v or v >= _version(p.max_version)):
            continue
        score = (4 * (p.hardware == hardware_id) + 2 * (p.hardware == cls)
                 + (p.min_version is not None) + (p.max_version is not None))
        if best is None or score >= best[0]:
            best = (score, p.cost)
    return best[1] if best else FRONTEND_NONE


class _Client(Protocol):
    def next_arrival_s(self) -> float: ...
    def pop_arrivals(self, now: float) -> list[Request]: ...
    def on_done(self, request: Request, now: float) -> None: ...


class FrontendClient:
    """A client seen through the API layer: a request sent at ``t`` reaches the engine at
    ``t + request_s`` (parallel), or, with ``serial``, when one worker that serves the requests
    in the order they were sent has spent ``request_s`` on it. Its ``arrival_s`` (and so its
    TTFT, latency and timeout) stays the time the client sent it."""

    def __init__(self, inner: _Client, request_s: float, serial: bool = False) -> None:
        self.inner = inner
        self.request_s = request_s
        self.serial = serial
        self.free_at = 0.0
        self.ready: deque[tuple[float, Request]] = deque()
        """Sent requests by the time they reach the engine (that order is the sending order)."""

    def _pull(self) -> None:
        """Take the inner client's next sending instant (only when nothing is in transit: every
        later request reaches the engine after those already in transit)."""
        t = self.inner.next_arrival_s()
        if t == INF:
            return
        for request in self.inner.pop_arrivals(t):
            start = max(request.arrival_s, self.free_at) if self.serial else request.arrival_s
            at = start + self.request_s
            if self.serial:
                self.free_at = at
            self.ready.append((at, request))

    def next_arrival_s(self) -> float:
        if not self.ready:
            self._pull()
        return self.ready[0][0] if self.ready else INF

    def pop_arrivals(self, now: float) -> list[Request]:
        out: list[Request] = []
        while True:
            if not self.ready:
                self._pull()
            if not self.ready or self.ready[0][0] > now:
                return out
            out.append(self.ready.popleft()[1])

    def on_done(self, request: Request, now: float) -> None:
        self.inner.on_done(request, now)


def wrap_client(client: Any, frontend: FrontendCost) -> Any:
    """``client`` behind the front end's delay, or ``client`` itself when there is none."""
    if frontend.request_s <= 0:
        return client
    return FrontendClient(client, frontend.request_s, frontend.serial)
