"""Published acceptance of speculative decoding by drafting method: the defaults a server uses
when its scenario gives no acceptance (``speculative.yaml``, each entry with its source)."""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

import yaml
from pydantic import Field, model_validator

from sim.catalog.base import CatalogError, _Spec

__all__ = ["AcceptanceDefault", "acceptance_default"]


class AcceptanceDefault(_Spec):
    """Measured acceptance of one drafting method (chain drafting, greedy sampling)."""

    accept_at_least: list[float] | None = None
    """P(the first i drafts are all accepted), i = 1, 2, ... (vLLM's per-position metric)."""
    acceptance_rate: float | None = Field(ge=0, le=1, default=None)
    """One conditional rate for every position (i.i.d. acceptance)."""
    proposal_rate: float = Field(gt=0, le=1, default=1.0)
    """Fraction of decoding steps that propose a draft at all."""
    source: str = Field(min_length=1)
    """Where the numbers come from (source, setup, date)."""

    @model_validator(mode="after")
    def _one_form(self) -> AcceptanceDefault:
        if (self.accept_at_least is None) == (self.acceptance_rate is None):
            raise ValueError("give exactly one of accept_at_least and acceptance_rate")
        return self


@lru_cache(maxsize=1)
def _table() -> dict[str, AcceptanceDefault]:
    data = yaml.safe_load(files("sim.catalog").joinpath("speculative.yaml").read_text())
    return {method: AcceptanceDefault.model_validate(entry) for method, entry in data.items()}


def acceptance_default(method: str) -> AcceptanceDefault:
    """The published acceptance of ``method`` (eagle, eagle3, ngram, draft_model)."""
    table = _table()
    if method not in table:
        raise CatalogError(f"no published acceptance for speculative method {method!r}; known: {', '.join(table)}")
    return table[method]
