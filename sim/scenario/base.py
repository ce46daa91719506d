"""Base of every scenario spec and the scenario error."""

from __future__ import annotations

from pydantic import (
    BaseModel,
    ConfigDict,
)


MAX_TOKENS = 1 << 30
"""Largest token count servesim accepts for one prompt or output (a billion tokens: far above any
model's context); the per-request records count tokens in 32 bits, and a conversation's prompt
grows by every turn, which the workload checks against 2**31 - 1."""


class ScenarioError(ValueError):
    """A scenario file is invalid; the message names the file, the field and the fix."""


class Spec(BaseModel):
    """Base of every scenario spec."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


