"""Liveness/readiness: answers 503 with the reason when the database is unreachable."""

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from server.db.session import check_database

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(request: Request) -> JSONResponse:
    problem = check_database(request.app.state.engine)
    if problem:
        return JSONResponse(
            status_code=503,
            content={"status": "error", "database": "unreachable", "reason": problem},
        )
    return JSONResponse(content={"status": "ok", "database": "ok"})
