"""jobs tokens roles

issue 23: background jobs get parameters, a current step, a log tail, a heartbeat and
cancel/attempt bookkeeping (a local worker or a distributed runner claims them); API
tokens for scripts (stored hashed, scoped read/write, revocable); studies get an owner
so a researcher cannot delete or close another researcher's study unless admin.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_JOB_COLUMNS = (
    ("params", sa.JSON(), None),
    ("step", sa.String(length=60), ""),
    ("log_tail", sa.Text(), ""),
    ("worker", sa.String(length=200), None),
    ("heartbeat_at", sa.DateTime(timezone=True), None),
    ("started_at", sa.DateTime(timezone=True), None),
    ("cancel_requested", sa.Boolean(), sa.false()),
    ("attempts", sa.Integer(), "0"),
    ("result", sa.JSON(), None),
    ("created_by", sa.String(length=320), None),
)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for name, type_, default in _JOB_COLUMNS:
            batch.add_column(
                sa.Column(name, type_, nullable=default is None, server_default=default)
            )
    op.create_index("ix_jobs_status", "jobs", ["status"])
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("owner_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_studies_owner_id", "admin_users", ["owner_id"], ["id"], ondelete="SET NULL"
        )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=12), nullable=False),
        sa.Column("scope", sa.String(length=10), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["admin_users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_hash"),
    )


def downgrade() -> None:
    op.drop_table("api_tokens")
    with op.batch_alter_table("studies") as batch:
        batch.drop_constraint("fk_studies_owner_id", type_="foreignkey")
        batch.drop_column("owner_id")
    op.drop_index("ix_jobs_status", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        for name, _, _ in reversed(_JOB_COLUMNS):
            batch.drop_column(name)
