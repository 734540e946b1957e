"""machine scores

issue 22: `machine_scores`, the machine interpretability score (MIS) of a unit per scoring
key (model, layer, unit, similarity backend, alpha, tasks, references, seed, image set),
with its CI over tasks, the per-task similarity differences and a note (dropped units).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "machine_scores",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("layer", sa.String(length=200), nullable=False),
        sa.Column("unit_index", sa.Integer(), nullable=False),
        sa.Column("layer_depth", sa.Float(), nullable=False),
        sa.Column("backend", sa.String(length=100), nullable=False),
        sa.Column("alpha", sa.Float(), nullable=False),
        sa.Column("n_tasks", sa.Integer(), nullable=False),
        sa.Column("k", sa.Integer(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("image_set", sa.String(length=64), nullable=False),
        sa.Column("images", sa.Text(), nullable=False),
        sa.Column("mis", sa.Float(), nullable=True),
        sa.Column("ci_low", sa.Float(), nullable=True),
        sa.Column("ci_high", sa.Float(), nullable=True),
        sa.Column("deltas", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "model", "layer", "unit_index", "backend", "alpha", "n_tasks", "k", "seed",
            "image_set", name="uq_machine_scores_key",
        ),
    )  # fmt: skip
    op.create_index("ix_machine_scores_model", "machine_scores", ["model"])


def downgrade() -> None:
    op.drop_index("ix_machine_scores_model", table_name="machine_scores")
    op.drop_table("machine_scores")
