"""practice and analysis

issue 19: practice rounds/passed, instruction time, analysis settings. Reserved in the chain so parallel work
never forks Alembic's head; fill upgrade/downgrade with the schema change.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
