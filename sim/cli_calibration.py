"""``servesim calibrate`` and ``servesim validate`` (registered on the main app)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the calibration and validation commands to ``app``."""
