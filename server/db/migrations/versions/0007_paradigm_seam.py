"""paradigm seam

issue 21: a trial says which paradigm built it (`trials.paradigm`), stores its images by
role (`trials.images`: role -> content hash, or a list of hashes for reference sets), the
roles offered as the two choices (`trials.choices`) and the role of the right one
(`trials.answer`). Serving and grading read these, so they know no paradigm. Existing
trials are 2AFC natural-vs-synthetic (`imi`) trials: their query/reference columns are
copied into the role map and the right choice is the max query. The query/reference
columns stay (filled for every paradigm: the answer query and the other one) for readers
that predate the seam (analysis, importers). Columns are only added (no table copy on
SQLite, which would cascade-delete assignments); `images`/`choices` stay nullable in the
schema, every trial row has them.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        batch.add_column(sa.Column("paradigm", sa.String(30), nullable=False, server_default="imi"))
        batch.add_column(sa.Column("images", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("choices", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("answer", sa.String(30), nullable=False, server_default="query_max")
        )
    trials = sa.table(
        "trials",
        sa.column("id", sa.String),
        sa.column("query_max", sa.String),
        sa.column("query_min", sa.String),
        sa.column("references_max", sa.JSON),
        sa.column("references_min", sa.JSON),
        sa.column("base_image", sa.String),
        sa.column("images", sa.JSON),
        sa.column("choices", sa.JSON),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(
            trials.c.id,
            trials.c.query_max,
            trials.c.query_min,
            trials.c.references_max,
            trials.c.references_min,
            trials.c.base_image,
        )
    ).all()
    for trial_id, q_max, q_min, refs_max, refs_min, base in rows:
        images = {
            "query_max": q_max,
            "query_min": q_min,
            "references_max": list(refs_max or []),
            "references_min": list(refs_min or []),
        }
        if base:
            images["base"] = base
        bind.execute(
            trials.update()
            .where(trials.c.id == trial_id)
            .values(images=images, choices=["query_max", "query_min"])
        )


def downgrade() -> None:
    # Never a batch "move and copy" on SQLite: dropping the old `trials` table with foreign
    # keys on would cascade-delete every assignment and response. SQLite >= 3.35 drops a
    # column in place.
    for column in ("answer", "choices", "images", "paradigm"):
        if op.get_bind().dialect.name == "sqlite":
            op.execute(f"ALTER TABLE trials DROP COLUMN {column}")
        else:
            op.drop_column("trials", column)
