"""The random observer: a coin flip per trial (chance level, the baseline of every score)."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np


class RandomObserver:
    name = "random"

    def choose(
        self,
        client: httpx.Client,
        session_id: str,
        trial: dict[str, Any],
        headers: dict[str, str],
        rng: np.random.Generator,
    ) -> str:
        return "a" if rng.random() < 0.5 else "b"
