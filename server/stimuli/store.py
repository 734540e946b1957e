"""Content-addressed image store: one file per sha256 of its encoded bytes.

Files are re-encoded from pixels (no EXIF, no original name) and written atomically
(temp file + fsync + rename + fsync of the directory), so neither a crash nor a power cut
leaves a half-written or vanished image under its hash.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

MEDIA_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}


@dataclass(frozen=True)
class StoredImage:
    sha256: str
    media_type: str
    width: int
    height: int


def encode_image(image: Image.Image | np.ndarray, fmt: str = "png", quality: int = 90) -> bytes:
    """Encode pixels only: PNG for synthetic images, JPEG/WebP (quality 90) for natural ones."""
    if isinstance(image, np.ndarray):
        array = image
        if array.dtype != np.uint8:
            array = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        image = Image.fromarray(array)
    image = image.convert("RGB")
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, format="PNG", optimize=False)
    elif fmt == "jpg":
        image.save(buffer, format="JPEG", quality=quality)
    elif fmt == "webp":
        image.save(buffer, format="WEBP", quality=quality)
    else:
        raise ValueError(f"unsupported image format {fmt!r}; use png, jpg or webp")
    return buffer.getvalue()


def fsync_directory(directory: Path) -> None:
    """Make the entries of `directory` (a rename, a new file) durable. POSIX only: Windows
    cannot open a directory, and NTFS journals renames itself."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(directory: Path) -> list[Path]:
    """`mkdir -p directory`; the directories it created, deepest first."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir(exist_ok=True)  # another writer may make it at the same moment
    return missing


class ImageStore:
    """Files live at ROOT/ab/cd/<sha256>.<ext>."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _path(self, sha256: str, ext: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / f"{sha256}.{ext}"

    def put(
        self, image: Image.Image | np.ndarray, fmt: str = "png", quality: int = 90
    ) -> StoredImage:
        return self.put_encoded(encode_image(image, fmt, quality), fmt)

    def put_encoded(self, data: bytes, fmt: str) -> StoredImage:
        """Store bytes that `encode_image` made (a shared store's local copy reuses them)."""
        sha256 = hashlib.sha256(data).hexdigest()
        path = self._path(sha256, fmt)
        if not path.exists():
            new_dirs = _make_dirs(path.parent)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            # The rename lives in the directory: until the directory is synced, a power cut
            # can leave the name pointing nowhere although the file's bytes are on disk.
            # Directories made just now are entries in their parents, synced the same way.
            for directory in (path.parent, *(d.parent for d in new_dirs)):
                fsync_directory(directory)
        with Image.open(io.BytesIO(data)) as decoded:
            width, height = decoded.size
        return StoredImage(sha256, MEDIA_TYPES[fmt], width, height)

    def locate(self, sha256: str) -> tuple[Path | None, str | None]:
        for ext, media_type in MEDIA_TYPES.items():
            path = self._path(sha256, ext)
            if path.exists():
                return path, media_type
        return None, None
