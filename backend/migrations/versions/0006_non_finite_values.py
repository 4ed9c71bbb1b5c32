"""A diverged run's values are kept: measured columns take NULL for NaN and infinity.

SQLite turns NaN into NULL by itself, so the NOT NULL ``metrics.value``,
``training_losses.loss`` and ``training_steps.value`` refused a diverged run's events. The
application now writes every non-finite value as NULL on both databases (the API served
it as null already). Downgrade deletes such rows first: the old columns cannot hold them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 18:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (("metrics", "value"), ("training_losses", "loss"), ("training_steps", "value"))


def _nullable(nullable: bool) -> None:
    for table, column in COLUMNS:
        # SQLite rebuilds the table: it must keep 0005's AUTOINCREMENT.
        kwargs = {"sqlite_autoincrement": True}
        with op.batch_alter_table(table, table_kwargs=kwargs) as batch:
            batch.alter_column(column, existing_type=sa.Double(), nullable=nullable)


def upgrade() -> None:
    _nullable(True)


def downgrade() -> None:
    for table, column in COLUMNS:
        op.execute(sa.text(f"DELETE FROM {table} WHERE {column} IS NULL"))
    _nullable(False)
