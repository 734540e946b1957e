"""The similarity observer answering real trials through the participant API.

It sees what a participant sees: the image URLs of the trial JSON (fetched with the
session's credentials, whatever form the URLs take), embeds the images, and answers query
a with probability sigmoid(alpha * (Delta_a - Delta_b)). Embeddings are cached by the
sha256 of the image bytes, so per-session URLs of one image cost one embedding.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

import httpx
import numpy as np

from server.errors import AppError
from server.studies.observers.backends import SimilarityBackend
from server.studies.observers.similarity import p_first


class SimilarityObserver:
    name = "similarity"

    def __init__(self, backend: SimilarityBackend, alpha: float):
        self.backend = backend
        self.alpha = alpha
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def _embed(self, client: httpx.Client, urls: list[str], headers: dict[str, str]):
        blobs = []
        for url in urls:
            reply = client.get(url, headers=headers)
            if reply.status_code != 200:
                raise AppError(f"image {url} could not be fetched: {reply.status_code}")
            blobs.append(reply.content)
        keys = [hashlib.sha256(blob).hexdigest() for blob in blobs]
        with self._lock:
            todo = [(k, b) for k, b in dict(zip(keys, blobs, strict=True)).items()
                    if k not in self._cache]  # fmt: skip
        if todo:
            rows = self.backend.embed_bytes([b for _, b in todo])
            with self._lock:
                self._cache.update({k: row for (k, _), row in zip(todo, rows, strict=True)})
        with self._lock:
            return np.stack([self._cache[k] for k in keys]) if keys else np.zeros((0, 1))

    def choose(
        self,
        client: httpx.Client,
        session_id: str,
        trial: dict[str, Any],
        headers: dict[str, str],
        rng: np.random.Generator,
    ) -> str:
        images = trial["images"]
        pos, neg = list(images.get("references_max", [])), list(images.get("references_min", []))
        urls = [images["query_a"], images["query_b"], *pos, *neg]
        embedded = self._embed(client, urls, headers)
        p_a = p_first(
            embedded[0], embedded[1], embedded[2 : 2 + len(pos)], embedded[2 + len(pos) :],
            self.alpha,
        )  # fmt: skip
        return "a" if rng.random() < p_a else "b"
