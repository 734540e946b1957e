"""`psychinterp demo`: the whole loop on the embedded defaults, offline, in one command.

SQLite file + builtin EfficientNet-Lite0 + scikit-image photos -> units, activations,
natural exemplars -> a small natural-vs-none 2AFC study -> live server. Rerunning it
reuses what exists (the study, the admin account) instead of failing.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from server.auth import create_admin_user
from server.config import Settings
from server.db.models import AdminUser, Study
from server.db.session import session_scope

DEMO_STUDY_FILE = Path(__file__).resolve().parent / "demo_study.yaml"
DEMO_ADMIN_EMAIL = "admin@demo.local"


@dataclass
class DemoInfo:
    study_slug: str
    admin_email: str
    admin_password: str | None  # only when created now: printed once, never stored in clear


def ensure_demo_admin(db: Session) -> str | None:
    """Create the demo admin with a random password; None if it already exists."""
    if db.scalar(select(AdminUser).where(AdminUser.email == DEMO_ADMIN_EMAIL)):
        return None
    password = secrets.token_urlsafe(12)
    create_admin_user(db, DEMO_ADMIN_EMAIL, password, role="admin")
    return password


def prepare_demo(factory: sessionmaker[Session], settings: Settings) -> DemoInfo:
    """Everything before serving: admin account, generated and launched demo study."""
    from server.studies.service import launch_study, setup_study_from_file

    with session_scope(factory) as db:
        password = ensure_demo_admin(db)
    with session_scope(factory) as db:
        study = db.scalar(select(Study).where(Study.slug == "demo"))
        if study is None:
            study = setup_study_from_file(db, settings, DEMO_STUDY_FILE, launch=True)
        elif study.status in {"draft", "paused"}:
            launch_study(db, study)
        slug = study.slug
    return DemoInfo(study_slug=slug, admin_email=DEMO_ADMIN_EMAIL, admin_password=password)
