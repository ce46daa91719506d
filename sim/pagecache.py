"""Loading a model: the disk, the loader's cap, and the host's page cache of model files.

A cold load reads the file from disk: ``startup_s + bytes / min(disk read bandwidth, loader cap)``
(disks in ``sim/catalog/storage.yaml``). A reload from RAM is fast, a read from disk is not:

Ollama (llama runner, mmap by default) and llama-server read a model's GGUF file through the
operating system's page cache (LOCAL_SERVERS.md §4): the first load reads the disk; once the file
is cached, a later load of the same model (after an unload, an eviction or a swap) only copies
its GPU layers from RAM to VRAM: "in case the model is already in RAM - the loading is very
fast: 1-2 seconds" (llama.cpp #17833); llama3.2:3b 10.13 s cold against ~0.62 s for later
starts on an M3 Pro (gh.kevintoh.cc/ollama-bench).

servesim keeps the cache per server as LRU over whole files, holding at most the host's RAM
(the catalog ``host`` CPU's ``memory_gib``). Not modelled: RAM that processes take from the cache
(the CPU layers of a split model, the engines' own buffers, other programs), files cached before
the run starts (every model's first load is cold), and partial files.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

import yaml

from sim.catalog import HardwareSpec
from sim.engines import EngineError
from sim.offload import host_link, host_of

__all__ = ["PageCache", "load_gb_s", "page_cache", "read_gb_s", "warm_load_s"]

GIB = 1 << 30


@dataclass
class PageCache:
    """LRU cache of whole model files, ``capacity_bytes`` at most."""

    capacity_bytes: float
    files: OrderedDict[str, float] = field(default_factory=OrderedDict)
    hits: int = 0
    misses: int = 0

    def read(self, name: str, size_bytes: float) -> bool:
        """Read the file ``name`` (``size_bytes``) through the cache; whether it was cached (warm)."""
        if name in self.files:
            self.files.move_to_end(name)
            self.hits += 1
            return True
        self.misses += 1
        if size_bytes <= self.capacity_bytes:
            while sum(self.files.values()) + size_bytes > self.capacity_bytes:
                self.files.popitem(last=False)  # the least recently read file leaves the cache
            self.files[name] = size_bytes
        return False


@cache
def _storage() -> dict[str, dict[str, Any]]:
    doc: dict[str, dict[str, Any]] = yaml.safe_load(files("sim.catalog").joinpath("storage.yaml").read_text(encoding="utf-8"))
    return doc


def read_gb_s(label: str, storage: str, cap: float) -> float:
    """GB/s a load reads at: the disk's read bandwidth (``sim/catalog/storage.yaml``), capped by the loader."""
    media = _storage()
    if storage not in media:
        raise EngineError(f"server {label!r}: storage {storage!r} is not in the catalog; use one of {', '.join(media)}")
    return min(float(media[storage]["read_gb_s"]), cap)


def load_gb_s(spec: Any) -> float:
    """GB/s an Ollama load reads at: the disk's read bandwidth, capped by Ollama's loader."""
    return read_gb_s(spec.label, spec.storage, spec.load_cap_gb_s)


def warm_load_s(startup_s: float, file_bytes: float, hardware: HardwareSpec) -> float:
    """A load from the page cache: start-up, then the weights copied from RAM over the GPU's host
    link (all of them: the CPU layers of a split model are not copied, so an upper bound)."""
    return startup_s + file_bytes / host_link(hardware)


def page_cache(enabled: bool, hardware: HardwareSpec) -> PageCache | None:
    """The host's page cache (its RAM, sim.pagecache), or None when the scenario turns it off."""
    return PageCache(host_of(hardware).memory_gib * GIB) if enabled else None
