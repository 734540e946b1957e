"""Occlusion stimuli (Zimmermann et al., NeurIPS 2021): where does hiding a patch of an
image leave a unit most and least active?

A square patch (a fraction of the image side: 0.4 by default, 0.3 and 0.5 as in the paper)
filled with the mean colour of the region it covers is slid over the base image on a grid
(stride 2 px at 224 px as in the paper: 68 x 68 positions for the 90 px patch). Every
occluded copy is a forward pass; they run in batches (one `LayerCapture` pass per batch,
cut off after the unit's layer). The max query is the occlusion that leaves the unit's
activation highest, the min query the one that leaves it lowest.

Pixels are kept on the 8-bit grid (the patch colour is rounded to a byte), so the occluded
images stored as PNG are exactly what the model saw: the ground truth can be recomputed
from the files (tests/test_occlusion.py does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from server.errors import AppError
from server.stimuli.models import LoadedModel
from server.stimuli.units import LayerCapture, UnitRef

PAPER_SIDE = 224  # the stride is given in pixels of a 224 px image


class OcclusionError(AppError):
    """A unit or image that cannot give an occlusion trial (the message says why)."""

    status_code = 422


@dataclass(frozen=True)
class Grid:
    side: int  # image side (square images)
    patch: int  # patch side in pixels
    stride: int
    positions: np.ndarray  # (N, 2) top, left of every patch

    @property
    def per_side(self) -> int:
        return (self.side - self.patch) // self.stride + 1


def occlusion_grid(side: int, patch_fraction: float, stride_px: int = 2) -> Grid:
    """Patch positions on a `side` px square image; the stride scales with the side."""
    if not 0 < patch_fraction < 1:
        raise OcclusionError(f"patch_fraction {patch_fraction} must be between 0 and 1")
    patch = round(patch_fraction * side)
    if patch < 1 or patch >= side:
        raise OcclusionError(
            f"an occlusion patch of {patch} px does not fit a {side} px image "
            "(patch_fraction must leave room to move it): lower task.patch_fraction"
        )
    stride = max(1, round(stride_px * side / PAPER_SIDE))
    steps = np.arange(0, side - patch + 1, stride)
    tops, lefts = np.meshgrid(steps, steps, indexing="ij")
    return Grid(side, patch, stride, np.stack([tops.ravel(), lefts.ravel()], axis=1))


def patch_means(image: torch.Tensor, grid: Grid) -> torch.Tensor:
    """(N, 3) mean colour under every patch, rounded to the 8-bit grid (integral image)."""
    padded = torch.nn.functional.pad(image.double().cumsum(1).cumsum(2), (1, 0, 1, 0))
    top = torch.as_tensor(grid.positions[:, 0])
    left = torch.as_tensor(grid.positions[:, 1])
    bottom, right = top + grid.patch, left + grid.patch
    sums = (
        padded[:, bottom, right]
        - padded[:, top, right]
        - padded[:, bottom, left]
        + padded[:, top, left]
    )
    means = (sums / grid.patch**2).T  # (N, 3)
    return (torch.round(means * 255) / 255).float()


def occluded_batch(
    image: torch.Tensor, grid: Grid, means: torch.Tensor, index: np.ndarray
) -> torch.Tensor:
    """Occluded copies of `image` (3, S, S) for the grid positions `index`: (B, 3, S, S)."""
    coords = torch.arange(grid.side)
    top = torch.as_tensor(grid.positions[index, 0])[:, None]
    left = torch.as_tensor(grid.positions[index, 1])[:, None]
    rows = (coords >= top) & (coords < top + grid.patch)  # (B, S)
    cols = (coords >= left) & (coords < left + grid.patch)
    mask = (rows[:, :, None] & cols[:, None, :])[:, None].float()  # (B, 1, S, S)
    fill = means[torch.as_tensor(index)][:, :, None, None]  # (B, 3, 1, 1)
    return image[None] * (1 - mask) + fill * mask


@dataclass
class Occlusion:
    """The ground truth of one occlusion trial (positions are the patches' top-left)."""

    unit: UnitRef
    grid: Grid
    base_activation: float
    activations: np.ndarray  # (N,) one per grid position
    max_position: tuple[int, int]
    min_position: tuple[int, int]
    max_image: np.ndarray  # (S, S, 3) uint8
    min_image: np.ndarray

    @property
    def activation_max(self) -> float:
        return float(self.activations.max())

    @property
    def activation_min(self) -> float:
        return float(self.activations.min())


def to_unit_tensor(pixels: np.ndarray) -> torch.Tensor:
    """(S, S, 3) uint8 -> (3, S, S) float in [0, 1]."""
    return torch.from_numpy(np.array(pixels, dtype=np.uint8)).permute(2, 0, 1).float() / 255


def unit_activations(
    model: LoadedModel, unit: UnitRef, images: torch.Tensor, batch_size: int = 64
) -> np.ndarray:
    """Spatial-mean activation of `unit` for (B, 3, S, S) images in [0, 1]."""
    normalize = model.normalizer().to(model.device)
    out = []
    with LayerCapture(model, [unit.layer]) as capture, torch.no_grad():
        for i in range(0, len(images), batch_size):
            batch = normalize(images[i : i + batch_size].to(model.device))
            out.append(capture.run(batch)[unit.layer][:, unit.index].float().cpu())
    return torch.cat(out).numpy()


def occlude_unit(
    model: LoadedModel,
    unit: UnitRef,
    base: np.ndarray,
    patch_fraction: float = 0.4,
    stride_px: int = 2,
    batch_size: int = 64,
    min_base_px: int = 64,
) -> Occlusion:
    """Every occlusion of `base` (S, S, 3 uint8) on the grid, in batched forward passes."""
    if base.ndim != 3 or base.shape[2] != 3 or base.shape[0] != base.shape[1]:
        raise OcclusionError(f"the base image must be square RGB, got shape {base.shape}")
    side = base.shape[0]
    if side < min_base_px:
        raise OcclusionError(
            f"unit {unit.layer}:{unit.index}: the base image is {side} px, smaller than "
            f"task.min_base_px ({min_base_px}): use larger images"
        )
    grid = occlusion_grid(side, patch_fraction, stride_px)
    image = to_unit_tensor(base)
    means = patch_means(image, grid)
    activations = []
    normalize = model.normalizer().to(model.device)
    with LayerCapture(model, [unit.layer]) as capture, torch.no_grad():
        base_act = capture.run(normalize(image[None].to(model.device)))[unit.layer]
        base_activation = float(base_act[0, unit.index])
        for start in range(0, len(grid.positions), batch_size):
            index = np.arange(start, min(start + batch_size, len(grid.positions)))
            batch = normalize(occluded_batch(image, grid, means, index).to(model.device))
            activations.append(capture.run(batch)[unit.layer][:, unit.index].float().cpu())
    acts = torch.cat(activations).numpy()
    i_max, i_min = int(np.argmax(acts)), int(np.argmin(acts))
    if acts[i_max] == acts[i_min]:
        raise OcclusionError(
            f"unit {unit.layer}:{unit.index}: every occlusion leaves the same activation "
            f"({acts[i_max]:.4g}), so no occlusion trial can be graded: pick other units "
            "(generation.units_per_layer, seed) or layers"
        )

    def pixels(i: int) -> np.ndarray:
        copy = occluded_batch(image, grid, means, np.array([i]))[0]
        return (copy.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)

    return Occlusion(
        unit,
        grid,
        base_activation,
        acts,
        tuple(int(v) for v in grid.positions[i_max]),
        tuple(int(v) for v in grid.positions[i_min]),
        pixels(i_max),
        pixels(i_min),
    )
