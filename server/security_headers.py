"""Security headers for the researcher side: admin pages, the admin API and exports.

Why a middleware and not a per-route header: every response under these prefixes must carry
them, including errors (401, 403, 404, 422) raised before a route runs and responses added
later by other routers; a pure ASGI middleware sees them all and costs nothing on the
participant paths, which it passes through untouched.

What each header stops:
- `Content-Security-Policy` with `frame-ancestors 'none'` and `X-Frame-Options: DENY` (for
  old browsers): no other site can frame the dashboard, so launch/pause/close buttons cannot
  be clickjacked; `script-src 'self'` keeps injected markup from running scripts.
- `X-Content-Type-Options: nosniff`: a CSV or JSON export is never sniffed into HTML.
- `Referrer-Policy: no-referrer`: study slugs and report URLs do not leak to other sites.
- `Cache-Control: no-store`: exports and pages with participant data stay out of browser and
  proxy caches (a shared lab computer, a corporate proxy).

A route may set its own `Content-Security-Policy` (the HTML report needs inline styles); the
middleware only fills in what a response lacks.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Path prefixes of everything a researcher (not a participant) sees.
RESEARCHER_PREFIXES = ("/admin", "/api/admin")

ADMIN_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
#: The standalone HTML report: inline <style>, figures as data: images, nothing else.
REPORT_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)

ADMIN_SECURITY_HEADERS = {
    "Content-Security-Policy": ADMIN_CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def is_researcher_path(path: str) -> bool:
    """`/admin`, `/admin/...`, `/api/admin`, `/api/admin/...` (not `/administrator`)."""
    return any(path == prefix or path.startswith(prefix + "/") for prefix in RESEARCHER_PREFIXES)


class ResearcherSecurityHeaders:
    """ASGI middleware adding ADMIN_SECURITY_HEADERS to every researcher-side response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_researcher_path(scope["path"]):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in ADMIN_SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
