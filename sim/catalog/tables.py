"""Loading the catalog YAML files and looking entries up by id or alias."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from types import MappingProxyType
from typing import Any

import yaml
from pydantic import (
    ValidationError,
)

from sim.catalog.base import CatalogError, _Spec
from sim.catalog.formats import WeightFormat
from sim.catalog.hardware import HardwareSpec
from sim.catalog.models import ModelSpec

# --------------------------------------------------------------------------------------------
# Loading and lookup
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Table:
    """One loaded catalog file: its entries in file order and a lookup index."""

    what: str
    """Singular noun for messages: ``hardware``, ``model`` or ``format``."""
    entries: tuple[Any, ...]
    """Validated specs in file order."""
    index: Mapping[str, Any]
    """Normalised id / alias -> spec."""


_TABLES: Mapping[str, tuple[str, type[_Spec], str]] = MappingProxyType(
    {
        "hardware": ("hardware.yaml", HardwareSpec, "id"),
        "model": ("models.yaml", ModelSpec, "id"),
        "format": ("formats.yaml", WeightFormat, "name"),
    }
)
"""Catalog kind -> (file name, spec class, name of the id field)."""


def _normalize(name: str) -> str:
    """Lookup key of a name: lower case without spaces, ``-``, ``_`` or ``:``."""
    return re.sub(r"[\s\-_:]+", "", name.strip().lower())


def _lookup_names(spec: Any, id_field: str) -> list[str]:
    """Names a spec answers to: its id, its aliases and, for models, its HF repository."""
    names = [getattr(spec, id_field), *spec.aliases]
    if isinstance(spec, ModelSpec):
        names += [spec.hf_name, spec.hf_name.rsplit("/", 1)[-1]]
    return names


def _validate_entries(filename: str, cls: type[_Spec], raw: Any) -> tuple[Any, ...]:
    """Validate the list of mappings read from a catalog file."""
    if not isinstance(raw, list):
        raise CatalogError(f"{filename}: expected a YAML list of entries, got {type(raw)}")
    entries = []
    for position, item in enumerate(raw):
        try:
            entries.append(cls.model_validate(item))
        except ValidationError as exc:
            label = item.get("id", item.get("name")) if isinstance(item, dict) else None
            message = f"{filename}: entry #{position} ({label}) is invalid: {exc}"
            raise CatalogError(message) from exc
    return tuple(entries)


def _build_index(filename: str, entries: tuple[Any, ...], id_field: str) -> Mapping[str, Any]:
    """Map every normalised name to its spec, rejecting names that collide."""
    index: dict[str, Any] = {}
    for spec in entries:
        for name in _lookup_names(spec, id_field):
            key = _normalize(name)
            other = index.setdefault(key, spec)
            if other is not spec:
                raise CatalogError(
                    f"{filename}: name {name!r} of {getattr(spec, id_field)!r} collides with "
                    f"{getattr(other, id_field)!r}; rename one or drop the alias"
                )
    return MappingProxyType(index)


@lru_cache(maxsize=None)
def _table(kind: str) -> _Table:
    """Read, validate and index one catalog YAML file (cached; the files are read-only)."""
    filename, cls, id_field = _TABLES[kind]
    text = files("sim.catalog").joinpath(filename).read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    entries = _validate_entries(filename, cls, document)
    return _Table(kind, entries, _build_index(filename, entries, id_field))


def _get(kind: str, name: str) -> Any:
    """Look up ``name`` in the ``kind`` catalog or raise a helpful :class:`CatalogError`."""
    table = _table(kind)
    spec = table.index.get(_normalize(name))
    if spec is not None:
        return spec
    raise CatalogError(_unknown_message(table, kind, name))


def _unknown_message(table: _Table, kind: str, name: str) -> str:
    """Error text for an unknown name: close matches, then every valid id."""
    id_field = _TABLES[kind][2]
    ids = [getattr(spec, id_field) for spec in table.entries]
    close = difflib.get_close_matches(_normalize(name), list(table.index), n=5, cutoff=0.5)
    suggestions = list(dict.fromkeys(getattr(table.index[key], id_field) for key in close))
    hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
    extra = (
        " Or build a spec from a Hugging Face config.json with model_from_hf_config()."
        if kind == "model"
        else f" Or add an entry to sim/catalog/{_TABLES[kind][0]}."
    )
    return f"unknown {kind} {name!r}.{hint} Valid ids: {', '.join(ids)}.{extra}"


def get_hardware(id: str) -> HardwareSpec:  # noqa: A002 - the public API names it ``id``
    """Hardware spec by id or alias (case-insensitive).

    Raises:
        CatalogError: If unknown; the message lists close matches and all valid ids.
    """
    return _get("hardware", id)


def list_hardware() -> list[HardwareSpec]:
    """All hardware specs, in catalog order."""
    return list(_table("hardware").entries)


def get_model(id: str) -> ModelSpec:  # noqa: A002 - the public API names it ``id``
    """Model spec by id, alias, Ollama tag or Hugging Face name (case-insensitive).

    Raises:
        CatalogError: If unknown; the message lists close matches and all valid ids.
    """
    return _get("model", id)


def list_models() -> list[ModelSpec]:
    """All model specs, in catalog order."""
    return list(_table("model").entries)


def get_format(name: str) -> WeightFormat:
    """Weight format by name or alias (case-insensitive).

    Raises:
        CatalogError: If unknown; the message lists close matches and all valid names.
    """
    return _get("format", name)


def list_formats() -> list[WeightFormat]:
    """All weight formats, in catalog order."""
    return list(_table("format").entries)


