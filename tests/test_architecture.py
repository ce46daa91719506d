"""The layout's rules hold: layers only point down (the import-linter contracts in pyproject.toml),
there is no import cycle anywhere in ``sim`` or ``calibration``, and the contracts would catch an
upward import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

ROOT = Path(__file__).resolve().parents[1]


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports())"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"})


def test_import_contracts_hold() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_a_contract(tmp_path: Path) -> None:
    """A copy of the packages where a low layer (sim.costs) imports a high one (sim.simulation)."""
    for name in ("sim", "calibration"):
        subprocess.run(["cp", "-r", str(ROOT / name), str(tmp_path / name)], check=True)
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    costs = tmp_path / "sim" / "costs.py"
    costs.write_text(costs.read_text() + "\nimport sim.simulation  # an upward import\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "sim.costs -> sim.simulation" in result.stdout


def test_no_import_cycles() -> None:
    graph = grimp.build_graph("sim", "calibration")
    modules = sorted(graph.modules)
    index = {m: i for i, m in enumerate(modules)}
    edges = [(index[m], index[d]) for m in modules for d in graph.find_modules_directly_imported_by(m)
             if d in index]
    rows, cols = zip(*edges, strict=True)
    matrix = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(modules), len(modules)))
    _, labels = connected_components(matrix, directed=True, connection="strong")
    cycles = [[modules[i] for i in np.flatnonzero(labels == k)] for k in np.unique(labels)
              if np.count_nonzero(labels == k) > 1]
    assert cycles == []


MAX_MODULE_LINES = 550
"""A module one can hold in one's head: ~500 lines (docs/architecture.md), with some slack."""


def test_no_module_is_too_long_to_read() -> None:
    long = {str(p.relative_to(ROOT)): n for p in sorted([*(ROOT / "sim").rglob("*.py"), *(ROOT / "calibration").rglob("*.py")])
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}
