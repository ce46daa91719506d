"""Closed forms of the queues that anchor the simplest server.

All functions return steady-state means; the remaining means follow from Little's law
(L = lambda W), so it holds by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.distributions import Deterministic, Distribution, Exponential

__all__ = ["QueueMetrics", "erlang_c", "md1", "mg1", "mm1", "mmc"]


@dataclass(frozen=True)
class QueueMetrics:
    """Steady-state means of one queue, in the units of the rates given."""

    arrival_rate: float
    utilisation: float
    wait_s: float
    """Mean time in queue, Wq."""
    sojourn_s: float
    """Mean time in system, W = Wq + E[S]."""

    @property
    def num_waiting(self) -> float:
        """Lq, by Little's law."""
        return self.arrival_rate * self.wait_s

    @property
    def num_in_system(self) -> float:
        """L, by Little's law."""
        return self.arrival_rate * self.sojourn_s


def _require_stable(rho: float) -> None:
    if not 0 <= rho < 1:
        raise ValueError(f"utilisation rho={rho:.3g} must be below 1 for a steady state")


def mg1(arrival_rate: float, service: Distribution) -> QueueMetrics:
    """M/G/1 FCFS, Pollaczek-Khinchine: Wq = lambda E[S^2] / (2 (1 - rho))."""
    rho = arrival_rate * service.mean
    _require_stable(rho)
    wait = arrival_rate * service.second_moment / (2 * (1 - rho))
    return QueueMetrics(arrival_rate, rho, wait, wait + service.mean)


def mm1(arrival_rate: float, service_rate: float) -> QueueMetrics:
    """M/M/1: Wq = rho / (mu - lambda)."""
    return mg1(arrival_rate, Exponential(service_rate))


def md1(arrival_rate: float, service_s: float) -> QueueMetrics:
    """M/D/1: Wq = rho d / (2 (1 - rho)), half of M/M/1."""
    return mg1(arrival_rate, Deterministic(service_s))


def erlang_c(num_servers: int, offered_load: float) -> float:
    """P(an arrival waits) in M/M/c with offered load a = lambda/mu < c.

    Uses the Erlang-B recursion B(k) = a B(k-1) / (k + a B(k-1)), stable for large c,
    then C = B / (1 - rho (1 - B)).
    """
    rho = offered_load / num_servers
    _require_stable(rho)
    blocking = 1.0
    for k in range(1, num_servers + 1):
        blocking = offered_load * blocking / (k + offered_load * blocking)
    return blocking / (1 - rho * (1 - blocking))


def mmc(arrival_rate: float, service_rate: float, num_servers: int) -> QueueMetrics:
    """M/M/c FCFS: Wq = C(c, a) / (c mu - lambda)."""
    a = arrival_rate / service_rate
    wait = erlang_c(num_servers, a) / (num_servers * service_rate - arrival_rate)
    return QueueMetrics(arrival_rate, a / num_servers, wait, wait + 1 / service_rate)


def supermarket_sojourn(arrival_rate: float, choices: int, terms: int = 64) -> float:
    """Mean time in system of the supermarket model as n -> inf (exp(1) service, Poisson
    ``arrival_rate``·n, each job joins the shortest of ``choices`` uniform samples):
    ``T_d = sum_{i>=1} lam^((d^i - d)/(d - 1))``, ``T_1 = 1/(1 - lam)`` (Vvedenskaya, Dobrushin &
    Karpelevich 1996; Mitzenmacher 2001)."""
    _require_stable(arrival_rate)
    if choices == 1:
        return 1.0 / (1.0 - arrival_rate)
    total, d = 0.0, choices
    for i in range(1, terms + 1):
        exponent = (d**i - d) / (d - 1)
        if exponent > 1e4:
            break
        total += arrival_rate**exponent
    return total
