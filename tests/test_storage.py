"""Issue 24: the image store behind an interface; the S3 backend against a real S3 server.

moto's server mode (ThreadedMotoServer) speaks the S3 HTTP API on a loopback port; boto3
talks to it as to MinIO. Two "hosts" (two stores with their own local copies) share one
bucket; the stimulus route serves an S3-stored image with the same bytes and headers as a
locally stored one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from server.config import Settings
from server.errors import AppError
from server.stimuli.storage import S3ImageStore, image_store_from_url, open_image_store
from server.stimuli.store import ImageStore
from tests.conftest import import_or_skip

moto_server = import_or_skip(
    "moto.server", 'moto[server] is not installed: pip install -e ".[dev]"'
)
import_or_skip("boto3", 'boto3 is not installed: pip install -e ".[s3]"')


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from server.studies.simulate import free_port

    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def _pixels(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((24, 24, 3)).astype(np.float32)


def test_storage_url_selects_the_backend(tmp_path: Path, s3_endpoint: str) -> None:
    default = image_store_from_url("", tmp_path / "default", tmp_path / "cache")
    assert isinstance(default, ImageStore) and default.root == tmp_path / "default"
    directory = image_store_from_url(str(tmp_path / "srv"), tmp_path / "d", tmp_path / "c")
    assert isinstance(directory, ImageStore) and directory.root == tmp_path / "srv"
    s3 = image_store_from_url(
        f"s3://bucket-a/some/prefix?endpoint={s3_endpoint}", tmp_path / "d", tmp_path / "c"
    )
    assert isinstance(s3, S3ImageStore)
    assert (s3.bucket, s3.prefix) == ("bucket-a", "some/prefix")
    for bad, says in (
        ("gs://bucket/x", "use a directory or s3://"),
        ("s3:///prefix", "names no bucket"),
        ("s3://b/p?endpoint=http://x&secret=1", r"unknown parameter\(s\) secret"),
    ):
        with pytest.raises(AppError, match=says):
            image_store_from_url(bad, tmp_path, tmp_path)


def test_two_hosts_share_one_bucket(tmp_path: Path, s3_endpoint: str) -> None:
    url = f"s3://shared-stimuli/study?endpoint={s3_endpoint}"
    gpu_host = image_store_from_url(url, tmp_path / "unused", tmp_path / "gpu-cache")
    app_host = image_store_from_url(url, tmp_path / "unused", tmp_path / "app-cache")
    local = ImageStore(tmp_path / "local")

    stored = gpu_host.put(_pixels(1), "png")  # creates the bucket (MinIO starts empty)
    assert stored == local.put(_pixels(1), "png")  # same bytes, same hash, any backend
    natural = gpu_host.put(_pixels(2), "jpg")

    objects = gpu_host.client.list_objects_v2(Bucket="shared-stimuli")["Contents"]
    keys = sorted(o["Key"] for o in objects)
    sha = stored.sha256
    assert f"study/{sha[:2]}/{sha[2:4]}/{sha}.png" in keys and len(keys) == 2

    assert app_host.local.locate(sha) == (None, None)  # nothing local on the other host yet
    path, media_type = app_host.locate(sha)
    assert media_type == "image/png"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == sha
    assert path.is_relative_to(tmp_path / "app-cache")
    assert app_host.locate(natural.sha256)[1] == "image/jpeg"
    assert app_host.locate("0" * 64) == (None, None)

    gpu_host.put(_pixels(1), "png")  # storing again is a no-op
    assert len(gpu_host.client.list_objects_v2(Bucket="shared-stimuli")["Contents"]) == 2


def test_a_tampered_object_is_refused(tmp_path: Path, s3_endpoint: str) -> None:
    url = f"s3://tamper/p?endpoint={s3_endpoint}"
    writer = image_store_from_url(url, tmp_path, tmp_path / "w")
    sha = writer.put(_pixels(3), "png").sha256
    writer.client.put_object(Bucket="tamper", Key=writer._key(sha, "png"), Body=b"not it")
    reader = image_store_from_url(url, tmp_path, tmp_path / "r")
    with pytest.raises(AppError, match="does not match its hash"):
        reader.locate(sha)


def test_the_stimulus_route_serves_from_s3_as_from_disk(tmp_path: Path, s3_endpoint: str) -> None:
    from server.app import create_app

    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        data_dir=tmp_path / "app-data",
        secret_key="k",
        storage_url=f"s3://served/x?endpoint={s3_endpoint}",
    )
    writer = image_store_from_url(settings.storage_url, tmp_path, tmp_path / "generator")
    sha = writer.put(_pixels(4), "png").sha256
    expected = ImageStore(tmp_path / "disk").put(_pixels(4), "png")
    assert expected.sha256 == sha
    with TestClient(create_app(settings)) as client:
        reply = client.get(f"/stimuli/{sha}")
        again = client.get(f"/stimuli/{sha}", headers={"If-None-Match": f'"{sha}"'})
    assert reply.status_code == 200
    assert hashlib.sha256(reply.content).hexdigest() == sha
    assert reply.headers["content-type"] == "image/png"
    assert reply.headers["etag"] == f'"{sha}"'
    assert "immutable" in reply.headers["cache-control"]
    assert "last-modified" not in reply.headers
    assert again.status_code in (200, 304)
    assert isinstance(open_image_store(settings), S3ImageStore)
