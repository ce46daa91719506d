"""Base of every scenario spec and the scenario error."""

from __future__ import annotations

from pydantic import (
    BaseModel,
    ConfigDict,
)


class ScenarioError(ValueError):
    """A scenario file is invalid; the message names the file, the field and the fix."""


class Spec(BaseModel):
    """Base of every scenario spec."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


