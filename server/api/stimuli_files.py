"""Stimulus images at opaque content-hash URLs (`/stimuli/<sha256>`).

Headers are uniform: no filename, no role, long immutable caching. The hash is of
the re-encoded file (EXIF stripped at store time), so nothing here reveals an answer.
"""

import re

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from server.errors import NotFound
from server.stimuli.store import ImageStore

router = APIRouter(tags=["stimuli"])
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@router.get("/stimuli/{sha256}", include_in_schema=False)
def get_stimulus(sha256: str, request: Request) -> FileResponse:
    if not _SHA256.match(sha256):
        raise NotFound("no such image")
    store = ImageStore(request.app.state.settings.stimuli_dir)
    path, media_type = store.locate(sha256)
    if path is None:
        raise NotFound("no such image")
    return FileResponse(
        path,
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=31536000, immutable"},
        content_disposition_type="inline",
        filename=None,
    )
