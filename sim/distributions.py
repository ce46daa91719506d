"""Distributions that know their own moments, so tests can compare simulation with formulas.

Each distribution draws a whole column at once (``sample(rng, n)``) because workloads are
generated in bulk before a run, and exposes ``mean`` and ``second_moment`` so that
Pollaczek-Khinchine and friends can be evaluated from the very object the simulator uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Affine",
    "Deterministic",
    "Distribution",
    "Empirical",
    "Exponential",
    "Gamma",
    "LogNormal",
    "Uniform",
]


class Distribution:
    """Base of all distributions: bulk sampling plus analytic moments."""

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw ``n`` values."""
        raise NotImplementedError

    @property
    def mean(self) -> float:
        """E[X]."""
        raise NotImplementedError

    @property
    def second_moment(self) -> float:
        """E[X^2] = Var[X] + E[X]^2."""
        raise NotImplementedError

    @property
    def variance(self) -> float:
        """Var[X]."""
        return self.second_moment - self.mean**2


@dataclass(frozen=True)
class Deterministic(Distribution):
    """Always ``value``."""

    value: float

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.full(n, self.value, dtype=float)

    @property
    def mean(self) -> float:
        return self.value

    @property
    def second_moment(self) -> float:
        return self.value**2


@dataclass(frozen=True)
class Exponential(Distribution):
    """Exponential with the given ``rate`` (mean 1/rate)."""

    rate: float

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.exponential(1.0 / self.rate, n)

    @property
    def mean(self) -> float:
        return 1.0 / self.rate

    @property
    def second_moment(self) -> float:
        return 2.0 / self.rate**2


@dataclass(frozen=True)
class Gamma(Distribution):
    """Gamma with ``shape`` k and ``scale`` theta (mean k*theta, CV 1/sqrt(k))."""

    shape: float
    scale: float

    @classmethod
    def from_mean_cv(cls, mean: float, cv: float) -> Gamma:
        """Gamma with the given mean and coefficient of variation."""
        shape = 1.0 / cv**2
        return cls(shape=shape, scale=mean / shape)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.gamma(self.shape, self.scale, n)

    @property
    def mean(self) -> float:
        return self.shape * self.scale

    @property
    def second_moment(self) -> float:
        return self.shape * self.scale**2 + self.mean**2


@dataclass(frozen=True)
class Uniform(Distribution):
    """Uniform on [low, high]; with ``integer`` it is the discrete uniform on {low..high}."""

    low: float
    high: float
    integer: bool = False

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.integer:
            return rng.integers(int(self.low), int(self.high), n, endpoint=True).astype(float)
        return rng.uniform(self.low, self.high, n)

    @property
    def mean(self) -> float:
        return (self.low + self.high) / 2

    @property
    def second_moment(self) -> float:
        if self.integer:
            k = self.high - self.low + 1
            return self.mean**2 + (k * k - 1) / 12
        return self.mean**2 + (self.high - self.low) ** 2 / 12


@dataclass(frozen=True)
class LogNormal(Distribution):
    """Log-normal given by the ``mean`` of X and ``sigma`` of log X."""

    mean_value: float
    sigma: float

    @property
    def mu(self) -> float:
        """Mean of log X."""
        return math.log(self.mean_value) - self.sigma**2 / 2

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.lognormal(self.mu, self.sigma, n)

    @property
    def mean(self) -> float:
        return self.mean_value

    @property
    def second_moment(self) -> float:
        return math.exp(2 * self.mu + 2 * self.sigma**2)


@dataclass(frozen=True)
class Empirical(Distribution):
    """Resamples observed values with replacement (bootstrap)."""

    values: np.ndarray = field(repr=False)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.values[rng.integers(0, self.values.size, n)].astype(float)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def second_moment(self) -> float:
        return float(np.mean(np.asarray(self.values, dtype=float) ** 2))


@dataclass(frozen=True)
class Affine(Distribution):
    """``offset + scale * X`` for a base distribution X (e.g. a service time affine in the
    number of output tokens), with moments derived from the base's."""

    base: Distribution
    offset: float
    scale: float

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.offset + self.scale * self.base.sample(rng, n)

    @property
    def mean(self) -> float:
        return self.offset + self.scale * self.base.mean

    @property
    def second_moment(self) -> float:
        a, b = self.offset, self.scale
        return a * a + 2 * a * b * self.base.mean + b * b * self.base.second_moment
