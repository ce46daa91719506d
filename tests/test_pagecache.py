"""Loads through the host's page cache (sim.pagecache): cold from disk, warm from RAM.

The LRU cache itself; a model's first load reads the disk and later ones copy from RAM (start-up
+ bytes over the host link); with the cache off every load reads the disk (today's model); a host
whose RAM holds only one of two alternating models reads the disk every time.
"""

from __future__ import annotations

import numpy as np
import pytest

from sim.catalog import get_hardware
from sim.multimodel import MultiModelServer, resolve_models
from sim.offload import host_link
from sim.pagecache import PageCache
from sim.scenario.servers import OllamaSpec
from sim.workload import Workload
from tests.helpers import drive

HW = get_hardware("rtx-4090")
NO_FRONT = {"request_s": 0.0, "token_s": 0.0, "step_s": 0.0}


def test_lru_over_whole_files() -> None:
    cache = PageCache(10.0)
    assert [cache.read("a", 4), cache.read("b", 4), cache.read("a", 4)] == [False, False, True]
    assert cache.read("c", 4) is False  # a, b, c = 12 > 10: b (least recently read) leaves
    assert list(cache.files) == ["a", "c"]
    assert cache.read("b", 4) is False and cache.read("big", 11) is False and "big" not in cache.files
    assert (cache.hits, cache.misses) == (1, 5)


def _alternate(models: list[str], n: int, hardware=HW, **options) -> MultiModelServer:  # noqa: ANN001
    spec = OllamaSpec(name="o", version="0.12.0", frontend=NO_FRONT, **options,
                      models=[{"model": m, "weight": 1 / len(models), "keep_alive_s": 0} for m in models])
    workload = Workload(np.full(n, 100), np.full(n, 20), 60.0 * np.arange(n))  # each load after the last unload
    server = MultiModelServer(spec, resolve_models(spec, hardware), hardware, np.arange(n) % len(models))
    drive(server, workload, n)
    return server


def test_first_load_cold_then_warm_with_the_warm_time_from_the_host_link() -> None:
    n = 6
    server = _alternate(["llama-3.1-8b", "qwen2.5-14b"], n)
    for r in server.runners:
        assert r.loads == n // 2 and r.warm_loads == n // 2 - 1
        assert r.warm_load_s == pytest.approx(OllamaSpec().startup_s + r.file_bytes / host_link(HW))
        assert r.load_time_s == pytest.approx(r.load_s + (n // 2 - 1) * r.warm_load_s)


def test_without_the_page_cache_every_load_reads_the_disk() -> None:
    server = _alternate(["llama-3.1-8b", "qwen2.5-14b"], 6, page_cache=False)
    for r in server.runners:
        assert r.warm_loads == 0 and r.load_time_s == pytest.approx(r.loads * r.load_s)


def test_a_host_that_holds_one_file_reads_the_disk_every_time() -> None:
    # the 2-core VM's 24 GiB hold the 32B (~19 GB) or the 14B (~9 GB), not both: LRU thrashes
    small_host = HW.model_copy(update={"host": "epyc-zen5-2c-vm"})
    server = _alternate(["qwen2.5-32b", "qwen2.5-14b"], 6, hardware=small_host)
    assert sum(r.file_bytes for r in server.runners) > 24 * 2**30 > max(r.file_bytes for r in server.runners)
    assert [r.warm_loads for r in server.runners] == [0, 0]
    big = _alternate(["qwen2.5-32b", "qwen2.5-14b"], 6)
    assert [r.warm_loads for r in big.runners] == [2, 2]


def test_llama_swap_restarts_from_the_page_cache() -> None:
    from sim.llamaswap import simulate_swap
    from sim.scenario.servers import LlamaCppSpec
    from sim.workload import make_client

    n = 6
    workload = Workload(np.full(n, 100), np.full(n, 20), 60.0 * np.arange(n))
    for cached in (True, False):
        spec = LlamaCppSpec(name="s", frontend=NO_FRONT, llama_swap={
            "version": "v250", "page_cache": cached,
            "models": [{"model": "qwen2.5-32b", "weight": 0.5}, {"model": "qwen2.5-14b", "weight": 0.5}]})
        _, server = simulate_swap(spec, HW, make_client(workload, n), n, 0, model_of=np.arange(n) % 2)
        for r in server.runners:
            assert r.loads == n // 2
            assert r.warm_loads == (n // 2 - 1 if cached else 0)
            # ready at a health poll (0.25 s + k x 1 s) after the start-up and the copy
            assert r.load_time_s == pytest.approx(r.load_s + (n // 2 - 1) * (r.warm_load_s if cached else r.load_s))
            assert r.warm_load_s < r.load_s
