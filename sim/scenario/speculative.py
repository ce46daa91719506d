"""Speculative decoding options: vLLM ``--speculative-config`` and the acceptance checks llama.cpp shares."""

from __future__ import annotations

from itertools import pairwise
from typing import Literal, Self

from pydantic import Field, model_validator

from sim.scenario.base import Spec


# ---------------------------------------------------------------------------------------------
# Speculative decoding
# ---------------------------------------------------------------------------------------------
def check_acceptance(rate: float | None, rates: list[float] | None, prefix: str) -> None:
    if rate is not None and rates is not None:
        raise ValueError(f"give {prefix}acceptance_rate or {prefix}acceptance_rates, not both")
    if rates is not None:
        if not rates or any(not 0 <= r <= 1 for r in rates):
            raise ValueError(f"{prefix}acceptance_rates must be a non-empty list of probabilities in [0, 1]")
        if any(b > a for a, b in pairwise(rates)):
            raise ValueError(
                f"{prefix}acceptance_rates are P(the first i drafts are all accepted), so they cannot "
                f"increase with i; got {rates}"
            )


class SpeculativeConfig(Spec):
    """vLLM ``--speculative-config`` (V1 engine): drafts verified in one pass over k+1 tokens.

    The acceptance (``acceptance_rate`` / ``acceptance_rates`` / ``proposal_rate``) is not a
    vLLM option but a property of the model pair and the prompts; its defaults are the
    published measurements in ``sim/catalog/speculative.yaml`` (see docs/speculative.md).
    """

    method: Literal["ngram", "eagle", "eagle3", "draft_model"] | None = None
    """Drafter: ``ngram`` (prompt lookup on the CPU, free), ``eagle`` / ``eagle3`` (a one-layer
    head of the target's shape), ``draft_model`` (the smaller model ``model``). Default:
    draft_model when ``model`` is given."""
    num_speculative_tokens: int = Field(ge=0, le=32)
    """Draft tokens per request per step, k (vLLM's MAX_SPEC_LEN is 32; 0 turns speculation off)."""
    model: str | None = None
    """draft_model: the draft model's catalog id (e.g. llama-3.2-1b). eagle/eagle3: the head's
    repository, recorded in the run's notes only (the head is priced from the target's shape)."""
    acceptance_rate: float | None = Field(ge=0, le=1, default=None)
    """Probability that a draft is accepted given that the drafts before it were, the same at
    every position (i.i.d.). Default: the method's published acceptance."""
    acceptance_rates: list[float] | None = None
    """Per-position acceptance as vLLM reports it (and as its ``synthetic_acceptance_rates``):
    P(the first i drafts are all accepted), i = 1..; positions past the list continue with its
    last conditional rate. Default: the method's published acceptance."""
    proposal_rate: float | None = Field(gt=0, le=1, default=None)
    """Fraction of steps that propose drafts at all (ngram: steps whose prompt lookup finds a
    match). Default: 1 for model drafters, the published match rate for ngram."""
    num_speculative_tokens_per_batch_size: list[tuple[int, int, int]] | None = None
    """vLLM's dynamic speculation (2026): ``[first, last, k]`` rows, e.g. ``[[1, 64, 3], [65,
    128, 1], [129, 1024, 0]]``: k drafts while first <= running requests <= last;
    num_speculative_tokens outside every row."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        check_acceptance(self.acceptance_rate, self.acceptance_rates, "")
        method = self.method or ("draft_model" if self.model else None)
        if method is None:
            raise ValueError("set method (ngram, eagle, eagle3, draft_model) or a draft model")
        if method == "draft_model" and not self.model:
            raise ValueError("method draft_model needs model: the draft model's catalog id (e.g. llama-3.2-1b)")
        if method == "ngram" and self.model:
            raise ValueError("method ngram drafts from the prompt and takes no model; remove model")
        for first, last, k in self.num_speculative_tokens_per_batch_size or []:
            if not 1 <= first <= last or not 0 <= k <= self.num_speculative_tokens:
                raise ValueError(
                    f"num_speculative_tokens_per_batch_size row {[first, last, k]}: need 1 <= first <= last "
                    f"and 0 <= k <= num_speculative_tokens ({self.num_speculative_tokens})"
                )
        return self

    @property
    def drafting_method(self) -> str:
        """The method, inferred from ``model`` when not given."""
        return self.method or "draft_model"
