"""Closed forms pinned to hand-checkable values and to each other."""

import pytest

from sim.distributions import Affine, Deterministic, Exponential, Gamma, LogNormal, Uniform
from sim.theory import erlang_c, md1, mg1, mm1, mmc


def test_mm1_wait_is_rho_over_mu_minus_lambda() -> None:
    assert mm1(0.5, 1.0).wait_s == pytest.approx(1.0)  # rho/(mu-lambda) = 0.5/0.5


def test_md1_wait_is_half_of_mm1() -> None:
    assert md1(0.5, 1.0).wait_s == pytest.approx(mm1(0.5, 1.0).wait_s / 2)


def test_erlang_c_two_servers_unit_load() -> None:
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)


def test_mmc_with_one_server_is_mm1() -> None:
    a, b = mmc(0.7, 1.0, 1), mm1(0.7, 1.0)
    assert (a.wait_s, a.sojourn_s) == pytest.approx((b.wait_s, b.sojourn_s))


def test_mg1_with_exponential_is_mm1() -> None:
    assert mg1(0.3, Exponential(0.5)).wait_s == pytest.approx(mm1(0.3, 0.5).wait_s)


def test_littles_law_holds_by_construction() -> None:
    m = mmc(2.8, 1.0, 4)
    assert m.num_in_system == pytest.approx(m.num_waiting + 2.8 * 1.0)


def test_unstable_queue_is_refused() -> None:
    with pytest.raises(ValueError, match="below 1"):
        mm1(1.0, 1.0)


@pytest.mark.parametrize(
    "dist",
    [Exponential(2.0), Deterministic(3.0), Gamma(4.0, 0.25), Uniform(2, 9, integer=True), LogNormal(5.0, 0.7),
     Affine(Uniform(8, 120, integer=True), offset=-0.3, scale=0.005)],
    ids=lambda d: type(d).__name__,
)
def test_distribution_moments_match_samples(dist) -> None:
    import numpy as np

    x = dist.sample(np.random.default_rng(1), 400_000)
    assert np.mean(x) == pytest.approx(dist.mean, rel=0.01)
    assert np.mean(x**2) == pytest.approx(dist.second_moment, rel=0.02)
    assert np.var(x) == pytest.approx(dist.variance, rel=0.03)
