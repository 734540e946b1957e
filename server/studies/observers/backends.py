"""Image similarity backends of the similarity observer: images in, unit-length embeddings out.

The offline default is a builtin model's penultimate layer (EfficientNet-Lite2's global
average pool, 1280 features): its weights ship in a PyPI package, so MIS runs here with no
download. Its embeddings go through the same batched, cached activation collector as the
scored model's units, so an image set is embedded once and reused by every later run.
DreamSim (the paper's choice) and CLIP run where the user installed them and has weights.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from server.errors import AppError
from server.studies.observers.similarity import normalize_rows

DEFAULT_BACKEND = "efficientnet-lite2"
PENULTIMATE_LAYER = "_avg_pooling"  # EfficientNet-Lite: pooled features before dropout + fc
BACKENDS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2", "dreamsim", "clip")


class SimilarityBackend(Protocol):
    name: str

    def embed_files(
        self, files: Sequence[Path], cache_dir: Path | None = None, progress=None
    ) -> tuple[list[str], np.ndarray]:
        """(paths of the readable files, their unit-length embeddings in that order).

        `progress(stage, done, total)` is told how far the embedding is, if given.
        """

    def embed_bytes(self, images: Sequence[bytes]) -> np.ndarray:
        """Unit-length embeddings of encoded images (PNG/JPEG bytes), in order."""


class BuiltinEmbedding:
    """A builtin EfficientNet-Lite's penultimate layer, cosine similarity."""

    def __init__(self, name: str = DEFAULT_BACKEND, device: str = "cpu", batch_size: int = 32):
        self.name = name
        self.device = device
        self.batch_size = batch_size
        self._model = None
        self._lock = threading.Lock()  # simulate's participant threads share one model

    @property
    def model(self):
        if self._model is None:
            from server.stimuli.models import load_model

            self._model = load_model(self.name, self.device)
        return self._model

    def embed_files(
        self, files: Sequence[Path], cache_dir: Path | None = None, progress=None
    ) -> tuple[list[str], np.ndarray]:
        from server.stimuli.activations import collect_activations
        from server.stimuli.units import UnitRef

        units = [UnitRef(self.name, PENULTIMATE_LAYER, i) for i in range(self._width())]
        with self._lock:
            table = collect_activations(
                self.model,
                list(files),
                units,
                cache_dir=cache_dir,
                batch_size=self.batch_size,
                progress=None if progress is None else _as_stage(progress, "embeddings"),
            )
        embeddings = normalize_rows(table.values[PENULTIMATE_LAYER].astype(np.float32))
        return [str(p) for p in table.files], embeddings

    def _width(self) -> int:
        from server.stimuli.units import layer_widths

        return layer_widths(self.model, [PENULTIMATE_LAYER])[PENULTIMATE_LAYER]

    def embed_bytes(self, images: Sequence[bytes]) -> np.ndarray:
        import torch

        from server.stimuli.units import LayerCapture

        model = self.model
        to_input = model.preprocessing.pil_to_input()
        batch = torch.stack([to_input(_decode(data)) for data in images]).to(model.device)
        with self._lock, torch.inference_mode(), LayerCapture(model, [PENULTIMATE_LAYER]) as cap:
            out = cap.run(batch)[PENULTIMATE_LAYER]
        return normalize_rows(out.float().cpu().numpy())


def _as_stage(progress, stage: str):
    """The collector reports its stage as "activations"; call it what it is here."""
    return lambda _stage, done, total: progress(stage, done, total)


def _decode(data: bytes):
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except OSError as exc:
        raise AppError(
            f"an image could not be decoded for the similarity observer: {exc}"
        ) from None


class _PilEmbedding:
    """Shared file/bytes plumbing for backends that embed PIL images one batch at a time."""

    name = ""

    def _embed_pil(self, images: list) -> np.ndarray:
        raise NotImplementedError

    def embed_files(
        self, files: Sequence[Path], cache_dir: Path | None = None, progress=None
    ) -> tuple[list[str], np.ndarray]:
        from server.stimuli.images import open_rgb

        kept, pixels = [], []
        for path in files:
            try:
                pixels.append(open_rgb(path))
                kept.append(str(path))
            except (OSError, AppError):
                continue
        rows = [self._embed_pil(pixels[i : i + 32]) for i in range(0, len(pixels), 32)]
        return kept, normalize_rows(np.concatenate(rows))

    def embed_bytes(self, images: Sequence[bytes]) -> np.ndarray:
        return normalize_rows(self._embed_pil([_decode(data) for data in images]))


class DreamSimEmbedding(_PilEmbedding):
    """DreamSim (Fu et al. 2023), the perceptual similarity the MIS paper uses."""

    name = "dreamsim"

    def __init__(self, device: str = "cpu", weights_dir: str | None = None):
        try:
            from dreamsim import dreamsim
        except ImportError:
            raise AppError(
                "the dreamsim backend needs the optional extra dreamsim: pip install dreamsim"
                " (its weights download on first use, or pass a folder that holds them); the "
                f"offline default is --backend {DEFAULT_BACKEND}"
            ) from None
        kwargs = {"cache_dir": weights_dir} if weights_dir else {}
        self.device = device
        self.model, self.preprocess = dreamsim(pretrained=True, device=device, **kwargs)

    def _embed_pil(self, images: list) -> np.ndarray:
        import torch

        batch = torch.cat([self.preprocess(image) for image in images]).to(self.device)
        with torch.inference_mode():
            return self.model.embed(batch).float().cpu().numpy()


class ClipEmbedding(_PilEmbedding):
    """CLIP image embeddings (open_clip), cosine similarity."""

    name = "clip"

    def __init__(self, device: str = "cpu", weights: str | None = None, arch: str = "ViT-B-32"):
        try:
            import open_clip
        except ImportError:
            raise AppError(
                "the clip backend needs the optional extra clip: pip install open_clip_torch, "
                "and a weights file given with --weights; the offline "
                f"default is --backend {DEFAULT_BACKEND}"
            ) from None
        if not weights:
            raise AppError("the clip backend needs its weights file: pass --weights FILE")
        self.device = device
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=weights, device=device
        )
        self.model.eval()

    def _embed_pil(self, images: list) -> np.ndarray:
        import torch

        batch = torch.stack([self.preprocess(image) for image in images]).to(self.device)
        with torch.inference_mode():
            return self.model.encode_image(batch).float().cpu().numpy()


def make_backend(
    name: str = DEFAULT_BACKEND, device: str = "cpu", weights: str | None = None
) -> SimilarityBackend:
    """A similarity backend by name, or a clear error listing the valid names."""
    if name.startswith("efficientnet-lite"):
        if name not in BACKENDS:
            raise AppError(f"unknown similarity backend {name!r}; valid: {', '.join(BACKENDS)}")
        return BuiltinEmbedding(name, device)
    if name == "dreamsim":
        return DreamSimEmbedding(device, weights)
    if name == "clip":
        return ClipEmbedding(device, weights)
    raise AppError(f"unknown similarity backend {name!r}; valid: {', '.join(BACKENDS)}")
