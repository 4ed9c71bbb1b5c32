"""Ids are never reused: every SQLite table gets AUTOINCREMENT.

Without it SQLite gives a new row the largest rowid plus one, so deleting the newest
experiment handed its id (and its runs' ids) to the next submission, and a bookmark or a
script that named the deleted run silently read another one. AUTOINCREMENT can only be set
when a table is created, so each table is rebuilt (batch mode: copy, drop, rename; the
environment turns foreign keys off meanwhile, see ``env.py``). PostgreSQL's sequences
never hand out an id twice: nothing changes there.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 13:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Parents before children, though with foreign keys off the order does not matter.
TABLES = (
    "users",
    "experiments",
    "runs",
    "metrics",
    "training_losses",
    "training_steps",
    "replacements",
    "run_transitions",
    "run_logs",
)


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass


def upgrade() -> None:
    _rebuild(autoincrement=True)


def downgrade() -> None:
    _rebuild(autoincrement=False)
