"""scale out

issue 24: storage backends, runner columns. Reserved in the chain so parallel work
never forks Alembic's head; fill upgrade/downgrade with the schema change.

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
