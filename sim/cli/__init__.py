"""The ``servesim`` command line: the top layer (it may import every layer below, and the
``calibration`` package for ``servesim calibrate``)."""

from __future__ import annotations

from sim.cli.app import app, main

__all__ = ["app", "main"]
