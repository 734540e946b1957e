"""Activations of every image of an image set for all sampled units, in one pass.

One DataLoader pass feeds all requested layers at once (the forward stops after the
deepest of them). Each finished batch is written to a chunk file in the cache, so an
interrupted run resumes where it stopped; the final table is float16 per layer, as the
selection of exemplars needs ranks, not precision.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from server.errors import AppError
from server.hashing import json_sha256
from server.stimuli.images import IMAGE_SUFFIXES, ImageFileDataset, ImageSet, scan_image_folder
from server.stimuli.models import LoadedModel
from server.stimuli.units import LayerCapture, UnitRef

Progress = Callable[[str, int, int], None]


@dataclass
class ActivationTable:
    """Per layer an (images x units) float16 array; rows follow `image_ids` (readable images)."""

    image_ids: list[str]
    files: list[Path]
    units: dict[str, list[int]]
    values: dict[str, np.ndarray]
    skipped: list[str] = field(default_factory=list)

    def of(self, unit: UnitRef) -> np.ndarray:
        """Activations of one unit over the readable images, as float32."""
        column = self.units[unit.layer].index(unit.index)
        return self.values[unit.layer][:, column].astype(np.float32)


def resolve_image_set(images: str | Path | Sequence[str | Path]) -> ImageSet:
    """A directory (flat or ImageFolder-style) or an explicit list of files."""
    if isinstance(images, (str, Path)):
        return scan_image_folder(images)
    files = [Path(p) for p in images]
    if not files:
        raise AppError("the image list is empty")
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise AppError(f"{len(missing)} image file(s) not found, e.g. {missing[0]}")
    bad = [str(p) for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    if bad:
        raise AppError(f"not image files: {', '.join(bad[:5])}")
    root = Path(os.path.commonpath([p.resolve().parent for p in files]))
    return ImageSet(
        root=root, files=[p.resolve() for p in files], labels=[-1] * len(files), classes=[]
    )


def _cache_key(
    model: LoadedModel, image_set: ImageSet, units: dict[str, list[int]], batch_size: int
) -> str:
    """Changes whenever the model, the files (name, size, mtime), the units or chunking do."""
    files = []
    for path in image_set.files:
        stat = path.stat()
        files.append([str(path), stat.st_size, stat.st_mtime_ns])
    payload = {"model": model.spec.to_dict(), "units": units, "files": files, "bs": batch_size}
    return json_sha256(payload)[:24]


def _save_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
    with os.fdopen(fd, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(tmp, path)


def _forward_in_pieces(
    capture: LayerCapture, inputs: torch.Tensor, state: dict[str, int]
) -> dict[str, torch.Tensor]:
    """Forward `inputs` in pieces of state['piece']; on out-of-memory halve it and go on."""
    while True:
        piece = state["piece"]
        try:
            parts = [capture.run(inputs[i : i + piece]) for i in range(0, len(inputs), piece)]
            return {name: torch.cat([p[name] for p in parts]) for name in capture.layers}
        except torch.OutOfMemoryError:
            if piece == 1:
                raise AppError(
                    "out of memory even with batch size 1; use a smaller model or another device"
                ) from None
            state["piece"] = piece // 2
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            warnings.warn(f"out of memory: batch size halved to {state['piece']}", stacklevel=2)


def collect_activations(
    model: LoadedModel,
    images: str | Path | Sequence[str | Path],
    units: Sequence[UnitRef],
    cache_dir: str | Path | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    progress: Progress | None = None,
) -> ActivationTable:
    """Spatial-mean activations of `units` on every readable image of `images`.

    Unreadable files are skipped and listed in `skipped`. With `cache_dir`, finished
    batches survive an interruption and a complete table is reused as is.
    """
    image_set = resolve_image_set(images)
    by_layer: dict[str, list[int]] = {}
    for unit in units:
        by_layer.setdefault(unit.layer, []).append(unit.index)
    n = len(image_set.files)
    chunk_dir = None
    if cache_dir is not None:
        chunk_dir = Path(cache_dir) / _cache_key(model, image_set, by_layer, batch_size)
        chunk_dir.mkdir(parents=True, exist_ok=True)
    n_chunks = (n + batch_size - 1) // batch_size
    chunks: dict[int, dict[str, np.ndarray]] = {}
    if chunk_dir is not None:
        for i in range(n_chunks):
            path = chunk_dir / f"chunk-{i:06d}.npz"
            if path.exists():
                with np.load(path) as data:
                    chunks[i] = {key: data[key] for key in data.files}
    todo = [i for i in range(n_chunks) if i not in chunks]
    if todo:
        _compute_chunks(
            model, image_set, by_layer, todo, batch_size, num_workers, chunks, chunk_dir, progress
        )
    ok = np.concatenate([chunks[i]["ok"] for i in range(n_chunks)])
    values = {
        layer: np.concatenate([chunks[i][layer] for i in range(n_chunks)])[ok] for layer in by_layer
    }
    ids = image_set.image_ids()
    return ActivationTable(
        image_ids=[ids[i] for i in np.flatnonzero(ok)],
        files=[image_set.files[i] for i in np.flatnonzero(ok)],
        units=by_layer,
        values=values,
        skipped=[ids[i] for i in np.flatnonzero(~ok)],
    )


def _compute_chunks(
    model: LoadedModel,
    image_set: ImageSet,
    by_layer: dict[str, list[int]],
    todo: list[int],
    batch_size: int,
    num_workers: int,
    chunks: dict[int, dict[str, np.ndarray]],
    chunk_dir: Path | None,
    progress: Progress | None,
) -> None:
    pre = model.preprocessing
    dataset = ImageFileDataset(
        image_set.files, image_set.labels, pre.pil_to_input(), pre.image_size
    )
    n = len(dataset)
    batches = [list(range(i * batch_size, min(n, (i + 1) * batch_size))) for i in todo]
    loader = DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=num_workers,
        pin_memory=model.device.type == "cuda",
        persistent_workers=False,
    )
    columns = {layer: torch.tensor(idx, device=model.device) for layer, idx in by_layer.items()}
    state = {"piece": batch_size}
    bar = tqdm(total=n, desc="activations", unit="img", disable=progress is not None)
    done = n - sum(len(b) for b in batches)
    with torch.inference_mode(), LayerCapture(model, by_layer) as capture:
        for inputs, _labels, indices, ok in loader:
            outputs = _forward_in_pieces(capture, inputs.to(model.device, non_blocking=True), state)
            chunk = {
                layer: outputs[layer]
                .index_select(1, columns[layer])
                .cpu()
                .numpy()
                .astype(np.float16)
                for layer in by_layer
            }
            chunk["ok"] = ok.numpy().astype(bool)
            index = int(indices[0]) // batch_size
            chunks[index] = chunk
            if chunk_dir is not None:
                _save_atomic(chunk_dir / f"chunk-{index:06d}.npz", chunk)
            done += len(indices)
            bar.update(len(indices))
            if progress is not None:
                progress("activations", done, n)
    bar.close()
