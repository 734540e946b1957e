"""The streamed CSV download of a study's responses, shared by the admin pages and the API."""

from __future__ import annotations

from fastapi.responses import StreamingResponse
from sqlalchemy.engine import Engine


def stream_study_csv(engine: Engine, slug: str, filename: str) -> StreamingResponse:
    """Every response, one row per trial, as CSV written one chunk of rows at a time."""
    from analysis import study_rows
    from analysis.export import to_safe_csv

    def chunks():
        header = True
        for frame in study_rows(engine, slug):
            yield to_safe_csv(frame, index=False, header=header)
            header = False

    return StreamingResponse(
        chunks(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
