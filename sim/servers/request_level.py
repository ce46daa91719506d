"""Request-level single queue: ``c`` slots behind one FCFS queue, each request served whole.

With i.i.d. sampled service times this is exactly M/G/c (M/M/1, M/D/1, M/G/1, M/M/c as
special cases): the theory anchor of the single-queue architecture. It is written the
textbook way, as SimPy processes pulling from a store.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import simpy

from sim.distributions import Deterministic, Distribution, Exponential, Gamma, LogNormal
from sim.recorder import Recorder
from sim.requests import Phase, Request, Status
from sim.scenario import ServiceDistribution
from sim.servers.base import Client

__all__ = ["RequestLevelServer", "service_distribution"]


def service_distribution(spec: ServiceDistribution) -> Distribution:
    """The distribution object (with its moments) a service spec describes."""
    match spec.kind:
        case "exponential":
            return Exponential(1.0 / spec.mean_s)
        case "deterministic":
            return Deterministic(spec.mean_s)
        case "gamma":
            return Gamma.from_mean_cv(spec.mean_s, spec.cv)
        case "lognormal":
            return LogNormal(spec.mean_s, float(np.sqrt(np.log1p(spec.cv**2))))
    raise AssertionError(spec.kind)


class RequestLevelServer:
    """``num_slots`` identical slots; request ``i`` holds a slot for ``service_s[i]`` seconds."""

    def __init__(self, num_slots: int, service_s: np.ndarray) -> None:
        self.num_slots = num_slots
        self.service_s = service_s
        self.wakeable = False
        """In a fleet: the feeder also wakes on :meth:`kick`."""

    def start(self, env: simpy.Environment, client: Client, recorder: Recorder) -> simpy.Process:
        """Spawn the arrival feeder and the slot processes."""
        self._queue: simpy.Store = simpy.Store(env)
        for _ in range(self.num_slots):
            env.process(self._slot(env, client, recorder))
        return env.process(self._feed(env, client, recorder))

    def _feed(self, env: simpy.Environment, client: Client, recorder: Recorder) -> Generator[simpy.Event, Any, None]:
        while True:
            for request in client.pop_arrivals(env.now):
                recorder.arrive(request)
                self._queue.put(request)
                if request.deadline_s < float("inf"):
                    env.process(self._timeout(env, request, client, recorder))
            wake = client.next_arrival_s()
            if wake == float("inf"):
                self._wake = env.event()
                yield self._wake  # closed loop: woken by a completion (or a fleet's kick)
                continue
            if self.wakeable:
                self._wake = env.event()
                yield env.any_of([self._wake, env.timeout(wake - env.now)])
                continue
            yield env.timeout(wake - env.now)

    def kick(self) -> None:
        """Wake the arrival feeder (a fleet routed a request here sooner than it expected)."""
        wake = getattr(self, "_wake", None)
        if wake is not None and not wake.triggered:
            wake.succeed()

    def _notify(self, client: Client, request: Request, now: float) -> None:
        client.on_done(request, now)
        wake = getattr(self, "_wake", None)
        if wake is not None and not wake.triggered:
            wake.succeed()

    def _timeout(self, env: simpy.Environment, request: Request, client: Client, recorder: Recorder) -> Generator[simpy.Event, Any, None]:
        yield env.timeout(request.deadline_s - env.now)
        if request.phase == Phase.QUEUED:  # a running request is served to the end here
            request.phase = Phase.GONE
            recorder.finish(request, env.now, Status.TIMEOUT)
            self._notify(client, request, env.now)

    def _slot(self, env: simpy.Environment, client: Client, recorder: Recorder) -> Generator[simpy.Event, Any, None]:
        while True:
            request = yield self._queue.get()
            if request.phase == Phase.GONE:
                continue
            request.phase = Phase.DECODE
            request.started_s = env.now
            yield env.timeout(float(self.service_s[request.id]))
            request.first_token_s = env.now
            request.generated = request.output_tokens
            request.phase = Phase.GONE
            recorder.finish(request, env.now, Status.COMPLETED)
            self._notify(client, request, env.now)
