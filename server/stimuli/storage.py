"""Where stimulus images live: the local content-addressed directory, or an S3-compatible
bucket shared by several hosts (issue 24), chosen by the `storage_url` setting.

Every backend offers the local store's two calls: `put(pixels, fmt)` (encode, hash, store
once) and `locate(sha256)` (a local file and its media type). The S3 backend keeps a local
read-through copy of every image it stores or reads, under DATA_DIR/stimuli-cache: content
is addressed by hash, so a copy can never be stale, and the stimulus routes keep serving
files exactly as before (same bytes, ETag, immutable caching, padding per session). The
bucket is the source of truth that app hosts and GPU workers share.

    storage_url = ""                                   -> DATA_DIR/stimuli
    storage_url = "/srv/stimuli"                       -> that directory
    storage_url = "s3://BUCKET/PREFIX?endpoint=http://minio:9000&region=us-east-1"

Credentials come from boto3's usual sources (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
~/.aws, an instance role), never from the URL.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

import numpy as np
from PIL import Image

from server.config import Settings
from server.errors import AppError
from server.stimuli.store import MEDIA_TYPES, ImageStore, StoredImage, encode_image

EXTENSIONS = {media_type: ext for ext, media_type in MEDIA_TYPES.items()}


class ImageStorage(Protocol):
    """What generation, importers and the stimulus routes need from an image store."""

    def put(
        self, image: Image.Image | np.ndarray, fmt: str = "png", quality: int = 90
    ) -> StoredImage: ...

    def locate(self, sha256: str) -> tuple[Path | None, str | None]: ...


class S3ImageStore:
    """Images at s3://BUCKET/PREFIX/ab/cd/<sha256>.<ext>, with a local read-through copy."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        cache_dir: Path,
        endpoint_url: str | None = None,
        region: str | None = None,
    ):
        try:
            import boto3
        except ImportError:
            raise AppError(
                'storage_url is s3://... but boto3 is not installed: pip install -e ".[s3]"'
            ) from None
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.local = ImageStore(cache_dir)
        self.client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region)
        self._bucket_checked = False

    def _key(self, sha256: str, ext: str) -> str:
        name = f"{sha256[:2]}/{sha256[2:4]}/{sha256}.{ext}"
        return f"{self.prefix}/{name}" if self.prefix else name

    def _ensure_bucket(self) -> None:
        """Create the bucket on first write (MinIO starts empty); an existing one is kept."""
        if self._bucket_checked:
            return
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
                raise AppError(
                    f"S3 bucket {self.bucket!r} is not usable ({exc}): check storage_url and "
                    "the AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY credentials"
                ) from None
            self.client.create_bucket(Bucket=self.bucket)
        self._bucket_checked = True

    def put(
        self, image: Image.Image | np.ndarray, fmt: str = "png", quality: int = 90
    ) -> StoredImage:
        data = encode_image(image, fmt, quality)
        stored = self.local.put_encoded(data, fmt)
        key = self._key(stored.sha256, fmt)
        if not self._exists(key):
            self._ensure_bucket()
            # One PUT is atomic in S3: readers see the whole object or none.
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentType=MEDIA_TYPES[fmt],
                ChecksumAlgorithm="SHA256",
            )
        return stored

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError:
            return False

    def locate(self, sha256: str) -> tuple[Path | None, str | None]:
        path, media_type = self.local.locate(sha256)
        if path is not None:
            return path, media_type
        stem = self._key(sha256, "")[:-1]  # ".../<sha256>." : one listing finds any extension
        try:
            listing = self.client.list_objects_v2(Bucket=self.bucket, Prefix=stem, MaxKeys=4)
        except self.client.exceptions.NoSuchBucket:
            return None, None
        for entry in listing.get("Contents", []):
            ext = entry["Key"].rsplit(".", 1)[-1]
            if ext in MEDIA_TYPES:
                data = self.client.get_object(Bucket=self.bucket, Key=entry["Key"])["Body"].read()
                if hashlib.sha256(data).hexdigest() != sha256:
                    raise AppError(f"s3://{self.bucket}/{entry['Key']} does not match its hash")
                return self._keep_copy(sha256, ext, data), MEDIA_TYPES[ext]
        return None, None

    def _keep_copy(self, sha256: str, ext: str, data: bytes) -> Path:
        path = self.local._path(sha256, ext)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
        return path


def image_store_from_url(storage_url: str, default_dir: Path, cache_dir: Path) -> ImageStorage:
    """The store `storage_url` names (see the module docstring); a clear error otherwise."""
    if not storage_url:
        return ImageStore(default_dir)
    parts = urlsplit(storage_url)
    if parts.scheme in ("", "file"):
        return ImageStore(Path(parts.path if parts.scheme else storage_url))
    if parts.scheme != "s3":
        raise AppError(
            f"storage_url {storage_url!r}: use a directory or s3://BUCKET/PREFIX?endpoint=URL"
        )
    if not parts.netloc:
        raise AppError(f"storage_url {storage_url!r} names no bucket: s3://BUCKET/PREFIX")
    query = parse_qs(parts.query)
    unknown = set(query) - {"endpoint", "region"}
    if unknown:
        raise AppError(
            f"storage_url: unknown parameter(s) {', '.join(sorted(unknown))}; "
            "only endpoint and region are understood"
        )
    return S3ImageStore(
        parts.netloc,
        parts.path,
        cache_dir,
        endpoint_url=query.get("endpoint", [None])[0],
        region=query.get("region", [None])[0],
    )


def open_image_store(settings: Settings) -> ImageStorage:
    """The deployment's image store (settings.storage_url; default DATA_DIR/stimuli)."""
    return image_store_from_url(
        settings.storage_url, settings.stimuli_dir, settings.data_dir / "stimuli-cache"
    )
