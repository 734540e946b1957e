"""Per-session image URLs: `/stimuli/<session id>/<token>`, resolved on the server.

A token is an HMAC of the session, the place the image is shown (assignment position and
slot) and the image's content hash. So the same image has a different URL in every session
(answers learnt in one session do not carry over by URL), and within a trial a query that
is also a reference (catch and practice trials) has a URL of its own. The server rebuilds
a session's token table from its assignments when asked; it is cached per process.
Every image of a session is served padded to one size (see server/stimuli/padding.py).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.auth import keyed_hash
from server.db.models import Assignment, Trial
from server.paradigms.base import right_and_wrong
from server.stimuli.padding import MIN_PAD
from server.stimuli.store import ImageStore

TOKEN_HEX = 32
CACHE_SESSIONS = 4096


def image_token(secret_key: str, session_id: str, position: int, slot: str, sha256: str) -> str:
    return keyed_hash(secret_key, f"{session_id}:{position}:{slot}:{sha256}", "stimulus-url")[
        :TOKEN_HEX
    ]


def choice_images(
    images: dict[str, Any], choices: list[str], answer: str, answer_is_a: bool
) -> tuple[str, str]:
    """(image shown as a, image shown as b) of a trial: the answer's side is the
    assignment's (`Assignment.max_is_a`: the right choice is shown as a)."""
    right, wrong = right_and_wrong(images, choices, answer)
    return (right, wrong) if answer_is_a else (wrong, right)


def single_images(images: dict[str, Any], choices: list[str]) -> dict[str, str]:
    """A trial's single images other than the two choices (e.g. an occlusion's base), by
    role; reference sets (lists) are shown in the assignment's order instead."""
    return {
        role: sha for role, sha in images.items() if isinstance(sha, str) and role not in choices
    }


def trial_images(
    secret_key: str,
    session_id: str,
    position: int,
    a: str,
    b: str,
    references_max: list[str],
    references_min: list[str],
    singles: dict[str, str] | None = None,
) -> dict[str, object]:
    """The `images` object of a served trial: opaque per-session URLs only. Single images
    of other roles (`singles`) are served under their role's name."""

    def url(slot: str, sha: str) -> str:
        return f"/stimuli/{session_id}/{image_token(secret_key, session_id, position, slot, sha)}"

    return {
        "query_a": url("a", a),
        "query_b": url("b", b),
        "references_max": [url(f"max{i}", s) for i, s in enumerate(references_max)],
        "references_min": [url(f"min{i}", s) for i, s in enumerate(references_min)],
        **{role: url(f"role:{role}", sha) for role, sha in (singles or {}).items()},
    }


@dataclass(frozen=True)
class SessionImages:
    by_token: dict[str, tuple[Path, str]]  # token -> (file, media type)
    served_size: int  # every image of the session is padded to this many bytes


_cache: OrderedDict[str, SessionImages] = OrderedDict()
_lock = threading.Lock()


def _build(db: Session, store: ImageStore, secret_key: str, session_id: str) -> SessionImages:
    rows = db.execute(
        select(
            Assignment.position,
            Assignment.max_is_a,
            Assignment.display,
            Trial.images,
            Trial.choices,
            Trial.answer,
        )
        .join(Trial, Trial.id == Assignment.trial_id)
        .where(Assignment.session_id == session_id)
    ).all()
    files: dict[str, tuple[Path, str]] = {}
    by_token: dict[str, tuple[Path, str]] = {}
    for position, max_is_a, display, images, choices, answer in rows:
        a, b = choice_images(images, choices, answer, max_is_a)
        slots = [("a", a), ("b", b)]
        slots += [(f"role:{r}", s) for r, s in single_images(images, choices).items()]
        slots += [(f"max{i}", s) for i, s in enumerate(display.get("max", []))]
        slots += [(f"min{i}", s) for i, s in enumerate(display.get("min", []))]
        for slot, sha in slots:
            if sha not in files:
                path, media_type = store.locate(sha)
                if path is None:
                    continue
                files[sha] = (path, media_type)
            by_token[image_token(secret_key, session_id, position, slot, sha)] = files[sha]
    largest = max((path.stat().st_size for path, _ in files.values()), default=0)
    # Rounded up so the size says nothing about the session's largest file either.
    served_size = -(-(largest + MIN_PAD) // 4096) * 4096
    return SessionImages(by_token, served_size)


def resolve(
    db: Session, store: ImageStore, secret_key: str, session_id: str, token: str
) -> tuple[Path, str, int] | None:
    """(file, media type, size to serve) for a session's image token, or None."""
    with _lock:
        images = _cache.get(session_id)
        if images is not None:
            _cache.move_to_end(session_id)
    if images is None or token not in images.by_token:
        # Not cached, or a new attempt of the practice block added assignments.
        images = _build(db, store, secret_key, session_id)
        with _lock:
            _cache[session_id] = images
            while len(_cache) > CACHE_SESSIONS:
                _cache.popitem(last=False)
    found = images.by_token.get(token)
    return None if found is None else (*found, images.served_size)
