"""Request bodies larger than `settings.max_upload_bytes` are refused before they are parsed.

A declared Content-Length over the limit gets a 413 at once, without reading the body. A
body sent without one (chunked) is counted as it arrives: the read that crosses the limit
raises `PayloadTooLarge`, which the app's AppError handler turns into the same 413. Nothing
large is ever buffered whole, so one huge post cannot stall the event loop while it parses.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import AppError


class PayloadTooLarge(AppError):
    status_code = 413


def too_large_message(limit: int) -> str:
    return (
        f"the request body is larger than {limit} bytes: send less data "
        "(the server's limit is PSYCHINTERP_MAX_UPLOAD_BYTES)"
    )


class BodySizeLimit:
    """Pure ASGI middleware (no BaseHTTPMiddleware: it would buffer and slow every request)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            response = JSONResponse(
                {"detail": too_large_message(self.max_bytes), "code": "PayloadTooLarge"},
                status_code=413,
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        received = 0
        limit = self.max_bytes

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(too_large_message(limit))
            return message

        await self.app(scope, counted_receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
