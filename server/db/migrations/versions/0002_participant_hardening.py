"""participant hardening

issue 25 (participant path): session/event/rate-limit tables and columns. Reserved in the chain so parallel work
never forks Alembic's head; fill upgrade/downgrade with the schema change.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
