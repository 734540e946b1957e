"""participant hardening

issue 25 (participant path): random session tokens that expire with the session
(`participant_sessions.token_expires_at`), served trials (`assignments.served_at`: only
those can be answered), events appended as rows (`session_events`, instead of rewriting
the JSON list on every post), and session starts kept for rate limits that hold across
processes (`session_starts`).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("participant_sessions") as batch:
        batch.add_column(sa.Column("token_expires_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("assignments") as batch:
        batch.add_column(sa.Column("served_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "session_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("type", sa.String(length=60), nullable=False),
        sa.Column("t_ms", sa.Float(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["participant_sessions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_session_events_session_id", "session_events", ["session_id"])
    op.create_table(
        "session_starts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("address_hash", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_session_starts_address_hash", "session_starts", ["address_hash"])
    op.create_index("ix_session_starts_at", "session_starts", ["at"])


def downgrade() -> None:
    op.drop_index("ix_session_starts_at", table_name="session_starts")
    op.drop_index("ix_session_starts_address_hash", table_name="session_starts")
    op.drop_table("session_starts")
    op.drop_index("ix_session_events_session_id", table_name="session_events")
    op.drop_table("session_events")
    with op.batch_alter_table("assignments") as batch:
        batch.drop_column("served_at")
    with op.batch_alter_table("participant_sessions") as batch:
        batch.drop_column("token_expires_at")
