"""Cost and energy model: the owned-hardware arithmetic, price lookup, the power fit."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import yaml

from calibration.power import fit_accelerator, fit_all
from sim.catalog import CatalogError
from sim.catalog.power import FITS_PATH, logistic_power, power_model
from sim.catalog.pricing import (
    HOURS_PER_YEAR,
    energy_hourly,
    owned_hourly,
    rental_price,
    rental_rows,
)


def test_owned_hourly_is_amortisation_plus_facility_energy():
    # a unit bought for exactly one dollar per hour of three years of service, drawing nothing
    assert owned_hourly(3 * HOURS_PER_YEAR, 3, 0, 0.12, 1.58) == pytest.approx(1.0)
    # 1 kW at the board, PUE 1.5, 0.10 $/kWh: 1.5 kWh an hour from the grid
    assert energy_hourly(1000, 0.10, 1.5) == pytest.approx(0.15)
    both = owned_hourly(2 * HOURS_PER_YEAR * 4, 2, 500, 0.2, 1.2)
    assert both == pytest.approx(4 + 0.5 * 1.2 * 0.2)
    for bad in ((100, 0, 1, 1, 1), (100, 1, 1, 1, 0.9), (-1, 1, 1, 1, 1)):
        with pytest.raises(ValueError):
            owned_hourly(*bad)


def test_rental_price_cheapest_credible_row_or_named_provider():
    rows = rental_rows("h100-sxm", "on-demand")
    credible = [r for r in rows if r.credibility in "ABC"]
    picked = rental_price("h100-sxm")
    assert picked.usd_per_gpu_hour == min(r.usd_per_gpu_hour for r in credible)
    assert picked.source.startswith("http")
    # planner defaults (credibility D) only when named
    assert any(r.credibility == "D" for r in rows)
    named = rental_price("h100-sxm", provider="AWS")
    assert named.provider == "AWS" and named.usd_per_gpu_hour in [r.usd_per_gpu_hour for r in rows if r.provider == "AWS"]
    assert rental_price("h100-sxm", "spot").usd_per_gpu_hour < picked.usd_per_gpu_hour * 2


def test_missing_price_says_what_exists_and_the_fix():
    with pytest.raises(CatalogError, match=r"no spot price .*l40s.*usd_per_gpu_hour"):
        rental_price("l40s", "spot")


def test_logistic_limits_and_midpoint():
    idle, top, k, x0 = 300.0, 600.0, 1.3, 4.0
    assert logistic_power(0, idle, top, k, x0) == idle
    assert logistic_power(2**x0, idle, top, k, x0) == pytest.approx((idle + top) / 2)
    values = [logistic_power(2.0**e, idle, top, k, x0) for e in range(14)]
    assert all(a < b for a, b in itertools.pairwise(values))
    assert idle < values[0] and values[-1] < top


def test_fit_recovers_known_constants():
    rng = np.random.default_rng(1)
    batch = 2.0 ** rng.uniform(0, 10, 60)
    truth = (250.0, 650.0, 0.8, 5.0)
    watts = np.array([logistic_power(b, *truth) for b in batch])
    fit = fit_accelerator("h100-sxm", 700.0, batch, watts)
    assert (fit.idle_w, fit.max_w, fit.k, fit.x0) == pytest.approx(truth, rel=1e-3)
    assert fit.rms_w < 1e-3


def test_stored_fits_are_what_the_data_give():
    doc = yaml.safe_load(FITS_PATH.read_text())
    assert doc["source"] and doc["fitted_on"] and doc["licence"]
    for (hw, gpus), fit in fit_all().items():
        stored = doc["fits"][hw][f"gpus{gpus}"]
        assert stored["points"] == fit.points and stored["data_dates"]
        for key, value in (("idle_w", fit.idle_w), ("max_w", fit.max_w), ("k", fit.k), ("x0", fit.x0),
                           ("residual_rms_w", fit.rms_w)):
            assert stored[key] == pytest.approx(value, abs=0.01), (hw, gpus, key)
        assert fit.rms_rel < 0.4  # residuals recorded; the spread between models is large


def test_transferred_power_is_the_h100_shape_scaled_by_board_power():
    h100, l40s = power_model("h100-sxm"), power_model("l40s")
    assert h100.basis == "fitted" and l40s.basis == "transferred" and "350 W / 700 W" in l40s.source
    for b in (0, 1, 16, 300):
        assert l40s.watts(b) == pytest.approx(h100.watts(b) * 350 / 700)
    with pytest.raises(CatalogError, match="power:"):
        power_model("epyc-zen5-2c-vm")
    assert math.isfinite(power_model("b200", gpus=8).watts(64))
