"""Image sets: an ImageFolder-style directory (or a list of files) read robustly.

Unreadable or truncated files are skipped, counted and reported, never fatal:
real image folders always contain a few broken files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from server.errors import AppError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}


@dataclass
class ImageSet:
    """Files of an image set with their class index (sorted class folders), if any."""

    root: Path
    files: list[Path]
    labels: list[int]
    classes: list[str]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def image_ids(self) -> list[str]:
        """Stable ids: paths relative to the root."""
        return [
            str(p.relative_to(self.root)) if p.is_relative_to(self.root) else str(p)
            for p in self.files
        ]


def scan_image_folder(root: str | Path, require_classes: bool = False) -> ImageSet:
    """List the images under `root`; class = first-level folder (sorted), as ImageFolder does."""
    root = Path(root)
    if not root.exists():
        raise AppError(f"image directory {str(root)!r} does not exist")
    if not root.is_dir():
        raise AppError(f"{str(root)!r} is not a directory; pass a folder of images")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[Path] = []
    labels: list[int] = []
    if class_dirs:
        for label, class_dir in enumerate(class_dirs):
            for path in sorted(class_dir.rglob("*")):
                if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                    files.append(path)
                    labels.append(label)
    elif require_classes and any(p.suffix.lower() in IMAGE_SUFFIXES for p in root.iterdir()):
        raise AppError(
            f"{str(root)!r} has no class folders: evaluation needs one folder per class "
            "(sorted folder names = the model's class order), like torchvision's ImageFolder"
        )
    else:
        for path in sorted(root.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                files.append(path)
                labels.append(-1)
    if not files:
        raise AppError(
            f"no images found in {str(root)!r} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    return ImageSet(root=root, files=files, labels=labels, classes=[p.name for p in class_dirs])


def open_rgb(path: str | Path) -> Image.Image:
    """Open and fully decode an image as RGB; raises AppError for unreadable files."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise AppError(f"unreadable image {path}: {exc}") from exc


class ImageFileDataset(Dataset):
    """Yields (tensor, label, index, ok); ok is False for unreadable files (skip them)."""

    def __init__(
        self,
        files: Sequence[Path],
        labels: Sequence[int],
        transform: Callable[[Image.Image], torch.Tensor],
        image_size: int,
    ):
        self.files = list(files)
        self.labels = list(labels)
        self.transform = transform
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, bool]:
        try:
            tensor = self.transform(open_rgb(self.files[index]))
            return tensor, self.labels[index], index, True
        except AppError:
            blank = torch.zeros(3, self.image_size, self.image_size)
            return blank, self.labels[index], index, False
