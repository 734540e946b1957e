"""Finished feature-visualization chunks on disk, so a resumed generation renders only the rest.

A chunk is rendered deterministically from (model, groups, FV config, seed, steps, plan
size, device type): that tuple is the key, so a cached chunk is exactly what rendering it
again would give (images kept as float32 arrays, not re-encoded). Generation keeps one
directory per generation config and deletes it once the stimulus set is stored.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from server.hashing import json_sha256

if TYPE_CHECKING:
    from server.stimuli.generate import FVConfig
    from server.stimuli.models import LoadedModel
    from server.stimuli.visualize import Group, Visualization


class ChunkCache:
    """`get`/`put` rendered chunks under `directory` (written atomically, one file a chunk)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.hits = 0

    @staticmethod
    def key(
        model: LoadedModel,
        chunk: list[Group],
        config: FVConfig,
        seed: int,
        max_steps: int,
        n_entries: int,
    ) -> str:
        return json_sha256(
            {
                "model": model.spec.to_dict(),
                "device": model.device.type,
                "groups": [
                    [
                        g.unit.model,
                        g.unit.layer,
                        g.unit.index,
                        g.direction,
                        g.first_entry,
                        g.size,
                        g.alpha,
                    ]
                    for g in chunk
                ],
                "fv": config.model_dump(mode="json"),
                "seed": seed,
                "max_steps": max_steps,
                "n_entries": n_entries,
            }
        )

    def _path(self, key_parts: tuple) -> Path:
        return self.directory / f"{self.key(*key_parts)}.pkl"

    def get(self, key_parts: tuple) -> list[Visualization] | None:
        """The chunk rendered with these `key` arguments, if it was stored."""
        path = self._path(key_parts)
        if not path.is_file():
            return None
        with path.open("rb") as handle:
            found = pickle.load(handle)  # our own files, written below
        self.hits += 1
        return found

    def put(self, key_parts: tuple, value: list[Visualization]) -> None:
        path = self._path(key_parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            pickle.dump(value, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)

    def clear(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
