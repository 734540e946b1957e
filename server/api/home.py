"""`/`: the address `psychinterp serve` prints leads somewhere useful.

A logged-in researcher lands on the dashboard; anyone else on the login page (the
dashboard's own guard does that redirect, so this route holds no auth logic).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

router = APIRouter(include_in_schema=False)


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/admin", status_code=307)
