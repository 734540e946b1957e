"""One base error for everything below the routers; one handler maps it to JSON."""

from __future__ import annotations


class AppError(Exception):
    """A failure a user can act on: `message` says what is wrong and how to fix it."""

    status_code: int = 400

    headers: dict[str, str] | None = None  # sent with the error response (e.g. Retry-After)

    def __init__(self, message: str, status_code: int | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        self.code = code or type(self).__name__


class NotFound(AppError):
    status_code = 404


class Conflict(AppError):
    status_code = 409


class Forbidden(AppError):
    status_code = 403


class Unauthorized(AppError):
    status_code = 401


class TooManyRequests(AppError):
    """A rate limit: the response carries Retry-After (seconds)."""

    status_code = 429

    def __init__(self, message: str, retry_after_s: int = 1):
        super().__init__(message)
        self.headers = {"Retry-After": str(max(1, retry_after_s))}
