"""The compiled core (mypyc) and the pure-Python core: which one runs, and that they agree."""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sim
from sim import _core
from tests import core_cases

ROOT = Path(__file__).resolve().parent.parent


def _require_compiled() -> None:
    if not sim.CORE.compiled:
        if os.environ.get("SERVESIM_REQUIRE_COMPILED"):  # set by .ci/run: the build must have compiled
            pytest.fail(f"the compiled core is not in use: {sim.CORE.reason}")
        pytest.skip(f"the compiled core is not in use: {sim.CORE.reason}")


def test_pure_and_compiled_cores_give_identical_results(tmp_path: Path) -> None:
    _require_compiled()
    out = tmp_path / "pure.npz"
    env = {**os.environ, _core.PURE_ENV: "1"}
    subprocess.run([sys.executable, "-m", "tests.core_cases", str(out)], cwd=ROOT, env=env, check=True)
    pure = dict(np.load(out))
    assert not pure.pop("core_compiled")
    compiled = core_cases.results()
    assert sorted(pure) == sorted(compiled)
    assert len(compiled) > 500
    for key, value in compiled.items():  # bit for bit: same floats, same counts
        np.testing.assert_array_equal(value, pure[key], err_msg=key, strict=True)


def test_the_pure_core_is_loaded_from_source_when_asked() -> None:
    code = "import sim, sim.servers.paged as p, sim.workload.clients as c; print(sim.CORE.compiled, p.__file__, c.__file__)"
    env = {**os.environ, _core.PURE_ENV: "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    flag, *files = out.stdout.split()
    assert flag == "False"
    assert all(f.endswith(".py") for f in files), files


def _fake_build(tmp_path: Path) -> Path:
    """A package tree with every compiled module's source, an (empty) extension, and a manifest."""
    package = tmp_path / "sim"
    digests = {}
    for module in _core.COMPILED:
        source = tmp_path.joinpath(*module.split(".")).with_suffix(".py")
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text(f"# {module}\n")
        source.with_name(source.stem + importlib.machinery.EXTENSION_SUFFIXES[0]).write_bytes(b"")
        digests[module] = hashlib.sha256(source.read_bytes()).hexdigest()
    (package / Path(_core.MANIFEST).name).write_text(json.dumps({"sources": digests}))
    return package


def test_an_intact_build_is_used(tmp_path: Path) -> None:
    assert _core.decide(_fake_build(tmp_path), {}).compiled


def test_an_edited_source_makes_the_build_stale(tmp_path: Path) -> None:
    package = _fake_build(tmp_path)
    (package / "servers" / "paged.py").write_text("# edited\n")
    info = _core.decide(package, {})
    assert not info.compiled and "paged.py changed" in info.reason


def test_a_missing_extension_or_manifest_means_pure_python(tmp_path: Path) -> None:
    package = _fake_build(tmp_path)
    (package / "servers" / ("base" + importlib.machinery.EXTENSION_SUFFIXES[0])).unlink()
    assert "sim.servers.base" in _core.decide(package, {}).reason
    (package / Path(_core.MANIFEST).name).unlink()
    assert not _core.decide(package, {}).compiled


@pytest.mark.parametrize(("value", "compiled"), [("1", False), ("yes", False), ("0", True), ("", True)])
def test_the_environment_can_force_pure_python(tmp_path: Path, value: str, compiled: bool) -> None:
    assert _core.decide(_fake_build(tmp_path), {_core.PURE_ENV: value}).compiled is compiled
