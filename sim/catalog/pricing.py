"""What an accelerator costs per hour: rented (by provider and offering) or owned.

Prices come from ``prices/prices.csv`` (each row with its source URL, date and credibility;
see ``prices/README.md``). :func:`rental_price` picks a row by hardware id, offering
(``on-demand``, ``spot``, ``reserved``) and optionally provider; without a provider it takes
the cheapest row of that offering whose credibility is A-C (planner defaults and estimates,
credibility D, are never picked unless named). :func:`owned_hourly` is the arithmetic for
owned hardware: purchase price spread evenly over a stated number of years of round-the-clock
service, plus the energy drawn at the stated electricity price and PUE. Every result carries
where its numbers came from.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files

from sim.catalog.base import CatalogError
from sim.catalog.power import BOARD_NAMES

__all__ = ["HOURS_PER_YEAR", "HourlyPrice", "owned_hourly", "purchase_price", "rental_price", "rental_rows"]

HOURS_PER_YEAR = 8760.0
"""365 days x 24 h (amortisation assumes round-the-clock service)."""

OFFERINGS = ("on-demand", "spot", "reserved")

EXTRA_NAMES = {"h100-sxm": ("H100 (SKU unspecified)",), "a100-80gb-sxm": ("A100 (SKU unspecified)",),
               "a10g": (), "a40": ("A40",), "rtx-4060-ti": ("RTX 4060 Ti (desktop)",),
               "apple-m4-max": ("Apple M4 Max (Mac Studio)",), "apple-m3-ultra": ("Apple M3 Ultra (Mac Studio)",),
               "apple-m2-ultra": ("Apple M2 Ultra (Mac Studio)",)}
"""More accelerator names a hardware id answers to in ``prices.csv``."""


@dataclass(frozen=True)
class HourlyPrice:
    """Dollars per GPU-hour and where the figure comes from."""

    usd_per_gpu_hour: float
    offering: str
    provider: str
    source: str
    date: str
    credibility: str


def _names(hardware: str) -> set[str]:
    names = set(EXTRA_NAMES.get(hardware, ()))
    if hardware in BOARD_NAMES:
        names.add(BOARD_NAMES[hardware])
    return names


@lru_cache(maxsize=1)
def _rows() -> tuple[dict[str, str], ...]:
    text = (files("sim.catalog") / "prices" / "prices.csv").read_text(encoding="utf-8")
    return tuple(csv.DictReader(io.StringIO(text)))


def rental_rows(hardware: str, offering: str) -> list[HourlyPrice]:
    """Every rental price of a hardware id for an offering (``on-demand`` excludes marketplace
    offers, whose ``pricing`` reads ``on-demand (marketplace)``; ask for that by name)."""
    names = _names(hardware)
    out = []
    for row in _rows():
        if row["accelerator"] in names and row["pricing"] == offering and row["usd_per_gpu_hour"]:
            out.append(HourlyPrice(float(row["usd_per_gpu_hour"]), offering, row["provider"],
                                   row["source_url"], row["date"], row["credibility"]))
    return out


def rental_price(hardware: str, offering: str = "on-demand", provider: str | None = None) -> HourlyPrice:
    """The GPU-hour price of a hardware id: the named provider's row, else the cheapest row of
    credibility A-C for that offering (raises CatalogError naming what exists)."""
    rows = rental_rows(hardware, offering)
    if provider is not None:
        rows = [r for r in rows if r.provider.lower() == provider.lower()]
    else:
        rows = [r for r in rows if r.credibility in ("A", "B", "C")]
    if not rows:
        have = sorted({(r["provider"], r["pricing"]) for r in _rows() if r["accelerator"] in _names(hardware)
                       and r["usd_per_gpu_hour"]})
        offer = ", ".join(f"{p} {o}" for p, o in have) or "none"
        raise CatalogError(
            f"no {offering} price for hardware {hardware!r}{f' from {provider}' if provider else ''} in "
            f"sim/catalog/prices/prices.csv (rows there: {offer}); give one in the plan, e.g. "
            "pricing: {" + hardware + ": {usd_per_gpu_hour: 2.5}}"
        )
    return min(rows, key=lambda r: (r.usd_per_gpu_hour, r.provider))


def purchase_price(hardware: str) -> tuple[float, str] | None:
    """(USD for one unit, source) from the purchase rows, or None."""
    for row in _rows():
        if row["accelerator"] in _names(hardware) and row["pricing"] == "purchase" and row["usd_purchase"]:
            return float(row["usd_purchase"]), row["source_url"]
    return None


def owned_hourly(purchase_usd: float, years: float, watts: float, usd_per_kwh: float, pue: float) -> float:
    """Dollars per hour of one owned unit: ``purchase / (years x 8760 h)`` plus
    ``watts / 1000 x PUE x $/kWh`` (facility energy of the unit's average draw)."""
    if years <= 0 or pue < 1 or usd_per_kwh < 0 or purchase_usd < 0 or watts < 0:
        raise ValueError("years > 0, PUE >= 1 and non-negative price, power and $/kWh are required")
    return purchase_usd / (years * HOURS_PER_YEAR) + watts / 1000.0 * pue * usd_per_kwh


def energy_hourly(watts: float, usd_per_kwh: float, pue: float) -> float:
    """Dollars per hour of energy at the facility for an average board draw of ``watts``."""
    return owned_hourly(0.0, 1.0, watts, usd_per_kwh, pue)
