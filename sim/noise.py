"""A machine's speed noise: every forward pass takes its priced time times a slowly varying factor.

A cost model prices a pass as if the machine always ran at the speed of its benchmarks. Real
machines do not: on a shared virtual machine, other tenants, frequency changes and the host's
scheduling make the same pass take a few per cent more or less from one second to the next.
A deterministic simulator then predicts a p99 equal to its median whenever the requests are all
alike, where a real server's p99 sits 5-30 % above (``docs/calibration.md``, speed noise).

servesim models this as a **speed factor** ``S(t)`` of the machine, a stationary random process
around 1: a pass that starts at ``t`` lasts its priced time times ``S(t)``. ``log S`` is an
Ornstein-Uhlenbeck process (Gaussian, exponentially correlated with correlation time
``correlation_s``), held constant over intervals of ``interval_s`` (a quarter of the correlation
time by default): the sequence of interval values is an AR(1) series with coefficient
``rho = exp(-interval_s / correlation_s)``; ``log S ~ N(s^2/2, s^2)`` with ``s^2 = ln(1 + cv^2)``,
so that the coefficient of variation of ``S`` is exactly ``cv`` and ``E[1/S] = 1``.

Why ``E[1/S] = 1`` and not ``E[S] = 1``: the costs are fitted on benchmarks that run flat out and
report tokens per second, i.e. the mean pass time *over passes*. A machine running flat out fits
``1/S`` passes per second into each stretch of time, so its mean pass time over passes is
``c / E[1/S]`` (``E`` over time); the fitted ``c`` is that mean when ``E[1/S] = 1``. A saturated
server's long-run throughput is then exactly the noiseless one; only the spread changes (the
time average ``E[S]`` is ``1 + cv^2``: a request arriving at a random time waits a little longer).

The parameters come from a machine's own one-user server runs (``calibration/fit_noise.py``):
the spread of consecutive requests' time per output token and how strongly neighbours correlate.
Only machines with such data have a noise profile; every other machine runs noiseless, and a
run's notes say which (``speed_noise``).

The values of the factor depend only on the interval index and the stream's seed, never on when
the server asks: a server stepping one pass at a time and one fast-forwarding runs of passes see
the same factors (``tests/test_noise.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

__all__ = ["NOISE_NONE", "SpeedNoise", "SpeedProcess", "load_noise_profiles", "noise_seed", "select_noise"]

INF = float("inf")
CHUNK = 4096
"""Interval values drawn at once (one batch of normal draws per chunk)."""


@dataclass(frozen=True)
class SpeedNoise:
    """A machine's speed noise (see the module docstring); ``cv == 0``: none."""

    id: str = "none"
    """Which profile (or override) the numbers come from; shown in a run's notes."""
    cv: float = 0.0
    """Coefficient of variation of the speed factor (whose reciprocal has mean 1)."""
    correlation_s: float = 1.0
    """Correlation time of log S (seconds): neighbours ``t`` apart correlate as exp(-t / it)."""
    interval_s: float | None = None
    """How long the factor holds one value (default: correlation_s / 4)."""
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_zero(self) -> bool:
        """No noise: the run is exactly the noiseless one."""
        return self.cv <= 0.0

    @property
    def step_s(self) -> float:
        """Length of one interval of constant speed."""
        return self.interval_s if self.interval_s is not None else self.correlation_s / 4

    def describe(self) -> str:
        """One line for a run's notes."""
        if self.is_zero:
            return f"{self.id}: no speed noise"
        return (f"{self.id}: speed factor cv {self.cv * 100:.2f} %, correlation {self.correlation_s:.2f} s, "
                f"held {self.step_s:.3f} s")

    def process(self, seed: int | np.random.SeedSequence) -> SpeedProcess:
        """The factor's values for one machine (one server or replica), drawn from ``seed``."""
        return SpeedProcess(self, seed)


NOISE_NONE = SpeedNoise()


class SpeedProcess:
    """The speed factor of one machine over time: :meth:`at` gives the factor in force at ``t``
    and when it next changes. Interval ``k`` covers ``[k * step, (k + 1) * step)``."""

    def __init__(self, noise: SpeedNoise, seed: int | np.random.SeedSequence) -> None:
        if noise.cv < 0 or noise.correlation_s <= 0 or noise.step_s <= 0:
            raise ValueError("speed noise needs cv >= 0, correlation_s > 0 and interval_s > 0")
        self.step = noise.step_s
        s2 = math.log1p(noise.cv * noise.cv)
        self.sigma = math.sqrt(s2)
        self.shift = s2 / 2  # E[1/S] = 1 (see the module docstring)
        self.rho = math.exp(-self.step / noise.correlation_s)
        self.innovation = math.sqrt(1.0 - self.rho * self.rho) * self.sigma
        self.rng = np.random.default_rng(seed)
        self.factors: list[float] = []
        self._last = float(self.rng.standard_normal()) * self.sigma  # stationary start
        self._grow(0)

    def _grow(self, k: int) -> None:
        """Extend the drawn factors to cover interval ``k``."""
        rho, shift = self.rho, self.shift
        while k >= len(self.factors):
            # x_j = rho * x_{j-1} + eps_j, continuing from the last value drawn (a plain loop: ~1 ms
            # per chunk, where scipy.signal.lfilter would cost its import, ~0.6 s and ~60 MB)
            last = self._last
            for e in (self.rng.standard_normal(CHUNK) * self.innovation).tolist():
                last = rho * last + e
                self.factors.append(math.exp(last + shift))
            self._last = last

    def at(self, t: float) -> tuple[float, float]:
        """(factor in force at ``t``, time at which the next interval starts)."""
        k = int(t // self.step)
        if k >= len(self.factors):
            self._grow(k)
        return self.factors[k], (k + 1) * self.step


def noise_seed(seed: int, machine: int) -> np.random.SeedSequence:
    """The speed-noise stream of machine ``machine`` (a replica's index; 0 for a lone server): a
    child of the scenario seed of its own, apart from the workload's and the acceptance streams."""
    return np.random.SeedSequence(seed, spawn_key=(5, machine))


def _noise_dir() -> Path:
    return Path(str(resources.files("calibration") / "profiles" / "noise"))


@lru_cache(maxsize=4)
def load_noise_profiles(path: str | None = None) -> tuple[tuple[str, SpeedNoise], ...]:
    """The fitted speed-noise profiles as (hardware id, noise) pairs (the shipped folder, or one file)."""
    files = [Path(path)] if path else sorted(_noise_dir().glob("*.yaml"))
    out = []
    for f in files:
        data = yaml.safe_load(f.read_text()) or {}
        for e in data.get("profiles", []):
            noise = SpeedNoise(e["id"], float(e["cv"]), float(e["correlation_s"]),
                               float(e["interval_s"]) if e.get("interval_s") is not None else None,
                               e.get("provenance", {}))
            out.append((str(e["hardware"]), noise))
    return tuple(out)


def select_noise(hardware_id: str, name: str | None = None) -> SpeedNoise:
    """The named speed-noise profile (``none``: no noise), else this machine's fitted one, else none.

    There is no class default: how noisy a machine is belongs to that machine (a dedicated GPU
    server and a shared two-core VM differ), so only machines measured for it get noise."""
    profiles = load_noise_profiles()
    if name is not None:
        if name == "none":
            return NOISE_NONE
        for _, noise in profiles:
            if noise.id == name:
                return noise
        known = ", ".join(["none", *(n.id for _, n in profiles)])
        raise ValueError(f"unknown speed-noise profile {name!r}; known: {known}")
    for hardware, noise in profiles:
        if hardware == hardware_id:
            return noise
    return NOISE_NONE
