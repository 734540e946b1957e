"""paradigm seam

issue 21: trials store images by role and the correct choice; paradigm per study. Reserved in the chain so parallel work
never forks Alembic's head; fill upgrade/downgrade with the schema change.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
