"""``python -m calibration fit [FILES...] [--out PATH] [--force] [--report DIR]`` and
``python -m calibration validate [CASES...] [--out DIR]``: the same commands as
``servesim calibrate`` / ``servesim validate``."""

from __future__ import annotations

import typer

from sim.cli.calibrate import register

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="servesim calibration: fit cost profiles, run validation cases.")
register(app)
# `fit` is the name this module's users expect; `calibrate` stays as an alias.
app.command("fit")(next(c.callback for c in app.registered_commands if c.name == "calibrate"))

if __name__ == "__main__":
    app()
