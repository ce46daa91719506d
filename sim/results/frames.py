"""Results as pandas DataFrames for scripts: ``sim.run(...).to_pandas()`` and
``sim.plan(...).to_pandas()``.

pandas is an optional extra (``pip install 'servesim[pandas]'``): it is imported only when a
frame is asked for, and its absence is a clear error saying how to install it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sim.results.tidy import tidy_rows

__all__ = ["RunResults", "frame", "require_pandas"]


def require_pandas() -> Any:
    """The pandas module, or ModuleNotFoundError saying how to install it."""
    try:
        import pandas
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "to_pandas() needs pandas, an optional extra of servesim: pip install 'servesim[pandas]' "
            "(or pip install pandas); without it, use .rows() for plain dicts", name="pandas") from None
    return pandas


def frame(rows: Sequence[dict[str, Any]]) -> Any:
    """A DataFrame with one row per dict, columns in first-seen order."""
    pandas = require_pandas()
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return pandas.DataFrame(list(rows), columns=columns)


class RunResults(list):  # type: ignore[type-arg]
    """What ``sim.run`` returns: the list of ``PointResult`` (one per server and sweep value),
    plus tidy rows and a DataFrame of them."""

    def rows(self) -> list[dict[str, Any]]:
        """One dict per point: server, engine, one key per swept field (its dotted path), every metric."""
        return tidy_rows([p.row() for p in self])

    def to_pandas(self) -> Any:
        """:meth:`rows` as a pandas DataFrame (needs the ``pandas`` extra)."""
        return frame(self.rows())
