"""The job kinds a worker can run: a name, a function and a check of its parameters.

A kind's function takes the running job's context and its parameters and returns a small
JSON-able result. Other features add kinds with one `register_job_kind(...)` call in their
own module, named in `KIND_MODULES` so every worker process imports it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from server.errors import AppError

if TYPE_CHECKING:
    from server.jobs.context import JobContext

JobFunction = Callable[["JobContext", dict[str, Any]], dict[str, Any] | None]
ParamsCheck = Callable[[dict[str, Any]], dict[str, Any]]

# Modules that register kinds; imported lazily (they may import torch).
KIND_MODULES = ["server.jobs.generation"]


@dataclass(frozen=True)
class JobKind:
    name: str
    run: JobFunction
    check_params: ParamsCheck
    description: str = ""


_KINDS: dict[str, JobKind] = {}


def register_job_kind(
    name: str, run: JobFunction, check_params: ParamsCheck, description: str = ""
) -> JobKind:
    kind = JobKind(name, run, check_params, description)
    _KINDS[name] = kind
    return kind


def job_kind(name: str) -> JobKind:
    """The registered kind `name`; an unknown name lists the known ones."""
    for module in KIND_MODULES:
        importlib.import_module(module)
    if name not in _KINDS:
        raise AppError(f"unknown job kind {name!r}: use one of {', '.join(sorted(_KINDS))}")
    return _KINDS[name]
