"""practice and analysis

issue 19: whether and when a participant passed practice and after how many rounds
(`participant_sessions.practice_passed`, `practice_passed_at`, `practice_attempts`), and
the time spent on the instructions as the page reported it (`instruction_s`), so the
`max_practice_attempts` and `min_instruction_s` exclusion rules can fire.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("participant_sessions") as batch:
        batch.add_column(sa.Column("practice_passed", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("practice_passed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("practice_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("instruction_s", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("participant_sessions") as batch:
        batch.drop_column("instruction_s")
        batch.drop_column("practice_attempts")
        batch.drop_column("practice_passed_at")
        batch.drop_column("practice_passed")
