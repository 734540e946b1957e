"""A small natural-image pool from the photos scikit-image ships (offline, real images).

Crops at several positions and scales plus horizontal flips turn ~15 photos into a
few hundred distinct images: enough for exemplars in demos and tests, not for science.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

# Colour or greyscale photographs of real scenes (not synthetic test patterns).
DEMO_PHOTOS = (
    "astronaut", "brick", "camera", "coffee", "chelsea", "clock", "coins", "grass", "gravel",
    "hubble_deep_field", "immunohistochemistry", "moon", "motorcycle", "page", "rocket", "retina",
)  # fmt: skip

# ImageNet class indices of photos whose content is unambiguous: a labelled ImageFolder
# built from these checks preprocessing against the weights (see tests and evaluate).
LABELLED_PHOTOS = {"chelsea": 282, "coffee": 967, "rocket": 657}


def load_photo(name: str) -> Image.Image:
    array = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    return Image.fromarray(array).convert("RGB")


def photo_variants(image: Image.Image, per_photo: int, size: int, rng: np.random.Generator):
    """Random square crops (35-100% of the short side) resized to `size`, half of them flipped."""
    width, height = image.size
    short = min(width, height)
    for i in range(per_photo):
        side = int(short * rng.uniform(0.35, 1.0))
        left = int(rng.integers(0, width - side + 1))
        top = int(rng.integers(0, height - side + 1))
        crop = image.crop((left, top, left + side, top + side)).resize(
            (size, size), Image.Resampling.BICUBIC
        )
        yield crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if i % 2 else crop


def build_demo_pool(
    out_dir: str | Path,
    per_photo: int = 12,
    size: int = 256,
    seed: int = 0,
    photos: tuple[str, ...] = DEMO_PHOTOS,
) -> Path:
    """Write `len(photos) * per_photo` JPEGs into `out_dir` (flat folder); reuse if complete."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    expected = len(photos) * per_photo
    if len(list(out.glob("*.jpg"))) == expected:
        return out
    rng = np.random.default_rng(seed)
    for name in photos:
        for i, crop in enumerate(photo_variants(load_photo(name), per_photo, size, rng)):
            crop.save(out / f"{name}_{i:03d}.jpg", quality=92)
    return out


def build_labelled_folder(
    out_dir: str | Path, per_photo: int = 4, size: int = 256, seed: int = 0
) -> Path:
    """An ImageNet-style folder (1000 sorted class folders) holding the labelled photos' crops."""
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    for index in range(1000):
        (out / f"class_{index:04d}").mkdir(parents=True, exist_ok=True)
    for name, label in LABELLED_PHOTOS.items():
        image = load_photo(name)
        # Mild crops only: the object must stay in view for the label to hold.
        width, height = image.size
        for i in range(per_photo):
            side = int(min(width, height) * rng.uniform(0.8, 1.0))
            left = int(rng.integers(0, width - side + 1))
            top = int(rng.integers(0, height - side + 1))
            crop = image.crop((left, top, left + side, top + side)).resize((size, size))
            if i % 2:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            crop.save(out / f"class_{label:04d}" / f"{name}_{i}.jpg", quality=92)
    return out
