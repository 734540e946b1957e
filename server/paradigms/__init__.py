"""The paradigm registry: one line per paradigm.

Adding a paradigm: a module here with a `Paradigm` subclass (server/paradigms/base.py), its
trial module web/static/js/trials/<trial_type>.js, a line below, a study YAML and tests.
"""

from __future__ import annotations

import importlib
import os
from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter

from server.paradigms.base import Paradigm, Section

_REGISTRY: dict[str, Paradigm] = {}
_adapter: TypeAdapter | None = None


def register(paradigm: Paradigm) -> Paradigm:
    """Add (or replace) a paradigm under its name."""
    global _adapter
    _REGISTRY[paradigm.name] = paradigm
    _adapter = None
    return paradigm


def unregister(name: str) -> None:
    global _adapter
    _REGISTRY.pop(name, None)
    _adapter = None


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> Paradigm:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown paradigm {name!r}: use one of {', '.join(names())}") from None


def section_adapter() -> TypeAdapter:
    """The sections of every registered paradigm as one union keyed on `paradigm`."""
    global _adapter
    if _adapter is None:
        sections = tuple(p.section for p in _REGISTRY.values())
        union: Any = Union[sections] if len(sections) > 1 else sections[0]  # noqa: UP007
        _adapter = TypeAdapter(
            Annotated[union, Field(discriminator="paradigm")] if len(sections) > 1 else union
        )
    return _adapter


def validate_section(paradigm: str, data: dict[str, Any] | None) -> Section:
    return section_adapter().validate_python({**(data or {}), "paradigm": paradigm})


# --- the registry: one line per paradigm ----------------------------------------------------
from server.paradigms.imi import ImiParadigm
from server.paradigms.occlusion import OcclusionParadigm

register(ImiParadigm())
register(OcclusionParadigm())


# Paradigms of other packages: PSYCHINTERP_PARADIGMS="package.module:ParadigmClass,..." (read
# here, so every process, e.g. the SQLite writer process, knows them too).
def _load_plug_in(spec: str) -> Paradigm:
    """One `package.module:ParadigmClass` entry of PSYCHINTERP_PARADIGMS, or an error naming it."""
    module, _, attr = spec.strip().partition(":")
    try:
        return getattr(importlib.import_module(module), attr)()
    except (ImportError, AttributeError, TypeError) as error:
        raise ImportError(
            f"PSYCHINTERP_PARADIGMS entry {spec.strip()!r} could not be loaded ({error}); "
            "write it as 'package.module:ParadigmClass' with the package importable here, "
            "or unset the variable"
        ) from error


for _spec in filter(None, os.environ.get("PSYCHINTERP_PARADIGMS", "").split(",")):
    register(_load_plug_in(_spec))
