"""Stimulus images at opaque per-session URLs (`/stimuli/<session id>/<token>`).

The token is resolved on the server (server/studies/stimulus_urls.py): the same image has
another URL in every session and in every place it is shown. Headers are uniform and carry
no timing: the ETag is the token (derived from the content hash, not from mtime and size),
there is no Last-Modified, and every image of a session is padded to one size. Images are
read whole (they are small) so no file metadata reaches a header.

`/stimuli/<sha256>` (content address) stays for researchers' pages; participants never see
a content hash.
"""

import re

from fastapi import APIRouter, Request
from fastapi.responses import Response

from server.api.deps import SessionDep
from server.errors import NotFound
from server.stimuli.padding import pad_to
from server.stimuli.storage import open_image_store
from server.studies import stimulus_urls

router = APIRouter(tags=["stimuli"])
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SESSION = re.compile(r"^[0-9a-f]{32}$")
_TOKEN = re.compile(rf"^[0-9a-f]{{{stimulus_urls.TOKEN_HEX}}}$")
_HEADERS = {
    "Cache-Control": "private, max-age=31536000, immutable",
    "X-Content-Type-Options": "nosniff",
}


def _image(data: bytes, media_type: str, etag: str) -> Response:
    return Response(data, media_type=media_type, headers={**_HEADERS, "ETag": f'"{etag}"'})


@router.get("/stimuli/{session_id}/{token}", include_in_schema=False)
def get_session_stimulus(session_id: str, token: str, request: Request, db: SessionDep):
    if not (_SESSION.match(session_id) and _TOKEN.match(token)):
        raise NotFound("no such image")
    if request.headers.get("if-none-match") == f'"{token}"':
        return Response(status_code=304, headers={**_HEADERS, "ETag": f'"{token}"'})
    store = open_image_store(request.app.state.settings)
    found = stimulus_urls.resolve(db, store, request.app.state.secret_key, session_id, token)
    if found is None:
        raise NotFound("no such image")
    path, media_type, size = found
    return _image(pad_to(path.read_bytes(), size), media_type, token)


@router.get("/stimuli/{sha256}", include_in_schema=False)
def get_stimulus(sha256: str, request: Request) -> Response:
    if not _SHA256.match(sha256):
        raise NotFound("no such image")
    store = open_image_store(request.app.state.settings)
    path, media_type = store.locate(sha256)
    if path is None:
        raise NotFound("no such image")
    return _image(path.read_bytes(), media_type, sha256)
