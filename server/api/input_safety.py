"""What untrusted JSON may contain, and how errors about it are reported.

Participants' bodies are parsed by pydantic's JSON parser (invalid UTF-8 and lone
surrogates are a validation error, not a crash) with `allow_inf_nan=False`. Free-form parts
(`data`, an event's `detail`, client extras) are walked here: only finite numbers, no NUL
characters (PostgreSQL text cannot hold them), and a size cap on their JSON encoding.
Error bodies name the field and the problem but never echo the input back (it can be
megabytes, or bytes that do not encode).
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StringConstraints

MAX_DEPTH = 8


def _check_value(value: Any, where: str, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"{where} is nested more than {MAX_DEPTH} levels deep: flatten it")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} contains a non-finite number (NaN or Infinity): send null")
    if isinstance(value, str) and "\x00" in value:
        raise ValueError(f"{where} contains a NUL character: remove it")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_value(key, where, depth + 1)
            _check_value(item, where, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_value(item, where, depth + 1)


def bounded_json(max_bytes: int, what: str):
    """An AfterValidator: finite numbers, no NUL, at most `max_bytes` as compact JSON."""

    def check(value: Any) -> Any:
        _check_value(value, what)
        size = len(json.dumps(value, separators=(",", ":")).encode())
        if size > max_bytes:
            raise ValueError(f"{what} is {size} bytes as JSON; the limit is {max_bytes}")
        return value

    return AfterValidator(check)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("contains a NUL character: remove it")
    return value


def Text(max_length: int, min_length: int = 0):
    """A bounded string without NUL characters."""
    return Annotated[
        str,
        StringConstraints(min_length=min_length, max_length=max_length),
        AfterValidator(_no_nul),
    ]


FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def _printable(part: Any) -> str:
    # A location part can be a key the client sent: short, and always encodable.
    text = str(part)[:60]
    return text.encode("utf-8", "replace").decode("utf-8")


def public_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validation errors as sent to clients: type, location and message, never the input."""
    return [
        {
            "type": str(error.get("type", "")),
            "loc": [_printable(part) for part in error.get("loc", ())],
            "msg": _printable(error.get("msg", ""))[:300] if error.get("msg") else "",
        }
        for error in errors
    ]


def error_sentence(errors: list[dict[str, Any]]) -> str:
    """One readable sentence per bad field (the `detail` of a 422)."""
    return "; ".join(
        f"{'.'.join(part for part in e['loc'] if part != 'body')}: {e['msg']}" for e in errors
    )
