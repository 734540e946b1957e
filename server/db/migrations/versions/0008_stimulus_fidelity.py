"""stimulus fidelity

issue 20: between-participant designs record each session's condition
(`participant_sessions.condition`, NULL within participants), so balance across conditions
is one GROUP BY and exports carry it. Reserved practice/catch material needs no column:
the stimulus set's manifest lists it.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("participant_sessions") as batch:
        batch.add_column(sa.Column("condition", sa.String(length=30), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("participant_sessions") as batch:
        batch.drop_column("condition")
