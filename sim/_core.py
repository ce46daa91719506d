"""Which core runs: the mypyc-compiled hot modules, or the same modules as pure Python.

``setup.py`` compiles the modules in :data:`COMPILED` with mypyc when it can (see its
docstring) and records the sha256 of each source in :data:`MANIFEST`. Before any of those
modules is imported, :func:`select` decides:

* compiled, when the extensions and the manifest are there and every source still matches;
* pure Python otherwise: no build, ``SERVESIM_PURE_PYTHON=1`` in the environment, or a source
  edited since the build (its extension is stale). The extensions are then bypassed all
  together (compiled modules reach into each other's native classes, so the two cannot mix).

Both give identical results (``tests/test_core.py`` checks it); the compiled core is about
twice as fast. This file must not import anything from ``sim`` (``setup.py`` reads it).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from pathlib import Path

COMPILED = (
    "sim.requests",
    "sim.workload.clients",
    "sim.shapes",
    "sim.costs",
    "sim.kv_cache",
    "sim.recorder",
    "sim.servers.base",
    "sim.servers.decode_set",
    "sim.servers.paged",
    "sim.servers.slots",
    "sim.servers.request_level",
    "sim.servers.speculative",
)
"""The hot modules mypyc compiles (plain Python source either way)."""

MANIFEST = "sim/_compiled.json"
PURE_ENV = "SERVESIM_PURE_PYTHON"

_PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class CoreInfo:
    """Which core this process runs, and why."""

    compiled: bool
    reason: str


def _source(module: str, package_dir: Path = _PACKAGE_DIR) -> Path:
    """``sim.servers.base`` -> ``<package_dir>/servers/base.py``."""
    return package_dir.parent.joinpath(*module.split(".")).with_suffix(".py")


def _has_extension(source: Path) -> bool:
    stem = source.with_suffix("")
    return any(stem.with_name(stem.name + suffix).exists()
               for suffix in importlib.machinery.EXTENSION_SUFFIXES)


def pure_requested(environ: Mapping[str, str] = os.environ) -> bool:
    """``SERVESIM_PURE_PYTHON`` set to anything but empty or 0 (read at build and at import)."""
    return environ.get(PURE_ENV, "").strip() not in ("", "0")


def decide(package_dir: Path = _PACKAGE_DIR, environ: Mapping[str, str] = os.environ) -> CoreInfo:
    """Whether the compiled extensions in ``package_dir`` may be used (see the module doc)."""
    if pure_requested(environ):
        return CoreInfo(False, f"{PURE_ENV} is set")
    manifest = package_dir / Path(MANIFEST).name
    if not manifest.exists():
        return CoreInfo(False, "not compiled (no mypyc build; see setup.py)")
    try:
        digests = json.loads(manifest.read_text())["sources"]
    except (OSError, ValueError, KeyError, TypeError):
        return CoreInfo(False, f"unreadable {manifest.name}: reinstall with `pip install -e .`")
    for module in COMPILED:
        source = _source(module, package_dir)
        if not _has_extension(source):
            return CoreInfo(False, f"no compiled extension for {module}: reinstall with `pip install -e .`")
        if digests.get(module) != hashlib.sha256(source.read_bytes()).hexdigest():
            return CoreInfo(
                False,
                f"{source.name} changed since the core was compiled: running pure Python "
                "(rebuild with `pip install -e .` for the compiled core)",
            )
    return CoreInfo(True, "compiled with mypyc")


class _SourceFirst:
    """Meta-path finder that loads the :data:`COMPILED` modules from their ``.py`` files."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if name not in COMPILED:
            return None
        source = _source(name)
        loader = importlib.machinery.SourceFileLoader(name, str(source))
        return importlib.util.spec_from_file_location(name, source, loader=loader)


def select() -> CoreInfo:
    """Decide once per process, before the compiled modules are imported (``sim/__init__``)."""
    info = decide()
    if not info.compiled and not any(isinstance(f, _SourceFirst) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFirst())
    return info
