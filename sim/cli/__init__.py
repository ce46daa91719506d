"""The ``servesim`` command line: the top layer (it may import every layer below, and the
``calibration`` package for ``servesim calibrate``)."""

from __future__ import annotations

from sim.cli.app import app, main
from sim.cli.plan import register as _register_plan

_register_plan(app)

__all__ = ["app", "main"]
