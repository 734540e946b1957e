"""Canonical JSON and its SHA-256: one definition, so every stored hash (config hashes,
audit and response chains, caches) is computed the same way and can be re-derived."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def json_sha256(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()
