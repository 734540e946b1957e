"""scale out

issue 24: no schema change was needed. Several app processes rely on constraints and row
locks that exist already (unique study+design_claim, idempotency_key, session+trial+attempt;
session_starts and login throttle rows); a generation job's runner and Ray address are
job params (JSON); the image store is chosen by the storage_url setting, and image rows
stay keyed by content hash whichever backend holds the bytes. Kept as an empty revision so
the reserved chain (0007-0009) stays linear.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
