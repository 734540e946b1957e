"""trials by role only

issue 21's seam stores a trial's images by role (`trials.images`, `choices`, `answer`) and
every reader (serving, grading, export, analysis, the MIS fit) reads only those since
stop 29. The 2AFC-shaped columns (`query_max`, `query_min`, `references_max`,
`references_min`, `base_image`) were still written for every paradigm, a second copy of
each trial's images that could only drift. They are dropped here.

On SQLite the drop is a batch table copy; env.py turns foreign keys off around migrations,
so the copy cannot cascade into assignments and responses, and checks the keys after.
The downgrade puts the columns back filled from the role map (the answer's image as the
max query, as `trial_row` wrote them).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

LEGACY_IMAGE_COLUMNS = ("query_max", "query_min", "base_image")
LEGACY_SET_COLUMNS = ("references_max", "references_min")


def upgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        for column in (*LEGACY_IMAGE_COLUMNS, *LEGACY_SET_COLUMNS):
            batch.drop_column(column)


def downgrade() -> None:
    with op.batch_alter_table("trials") as batch:
        for column in LEGACY_IMAGE_COLUMNS:
            batch.add_column(sa.Column(column, sa.String(64), nullable=True))
        for column in LEGACY_SET_COLUMNS:
            batch.add_column(sa.Column(column, sa.JSON(), nullable=True))
    trials = sa.table(
        "trials",
        sa.column("id", sa.String),
        sa.column("images", sa.JSON),
        sa.column("choices", sa.JSON),
        sa.column("answer", sa.String),
        *(sa.column(c, sa.String) for c in LEGACY_IMAGE_COLUMNS),
        *(sa.column(c, sa.JSON) for c in LEGACY_SET_COLUMNS),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(trials.c.id, trials.c.images, trials.c.choices, trials.c.answer)
    ).all()
    for trial_id, images, choices, answer in rows:
        other = choices[1] if choices[0] == answer else choices[0]
        base = images.get("base")
        bind.execute(
            trials.update()
            .where(trials.c.id == trial_id)
            .values(
                query_max=images[answer],
                query_min=images[other],
                references_max=list(images.get("references_max", [])),
                references_min=list(images.get("references_min", [])),
                base_image=base if isinstance(base, str) else None,
            )
        )
    with op.batch_alter_table("trials") as batch:
        for column in ("query_max", "query_min"):
            batch.alter_column(column, existing_type=sa.String(64), nullable=False)
        for column in LEGACY_SET_COLUMNS:
            batch.alter_column(column, existing_type=sa.JSON(), nullable=False)
        for column in LEGACY_IMAGE_COLUMNS:
            batch.create_foreign_key(f"trials_{column}_fkey", "images", [column], ["sha256"])
