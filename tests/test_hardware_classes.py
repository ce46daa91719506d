"""Laptop GPUs are their own hardware class with their own prior."""

from __future__ import annotations

import pytest

from sim.catalog import get_hardware
from sim.catalog.tables import list_hardware
from sim.profiles import select_profile


def test_every_laptop_gpu_of_the_catalog_is_in_the_laptop_class() -> None:
    laptops = [h for h in list_hardware() if "laptop" in (h.id + h.name).lower()]
    assert laptops
    assert all(h.kind == "laptop_gpu" for h in laptops), [h.id for h in laptops if h.kind != "laptop_gpu"]


@pytest.mark.parametrize("engine", ["llama.cpp", "ollama"])
def test_laptops_get_the_laptop_prior_and_desktops_do_not(engine: str) -> None:
    laptop = get_hardware("rtx-4060-laptop")
    chosen = select_profile(engine, laptop.id, laptop.kind, "llama-3.1-8b", "q4_k_m")
    assert chosen.id == f"prior-{engine}-laptop_gpu"
    assert chosen.provenance["source"]
    desktop = get_hardware("rtx-4070")
    assert "laptop" not in select_profile(engine, desktop.id, desktop.kind, "llama-3.1-8b", "q4_k_m").id
