"""session start index

Issue 25's session-start latency: every start releases the study's expired places with an
update on (study_id, status, started_at); an index on those columns lets it skip the
study's other sessions instead of reading all of them.

Revision ID: 0010
Revises: 0009
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_participant_sessions_study_status_started",
        "participant_sessions",
        ["study_id", "status", "started_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_participant_sessions_study_status_started", "participant_sessions")
