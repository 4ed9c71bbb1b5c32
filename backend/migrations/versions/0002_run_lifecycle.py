"""Run lifecycle: attempts and leases, sweep groups, status history and run log lines.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 10:12:40.114307
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("group_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("sweep", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("time_limit_s", sa.Double(), nullable=True))
        batch.add_column(sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("task_id", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("recoveries", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("worker", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("lease", sa.String(length=255), nullable=True))

    # Runs from before sweeps had groups: each experiment is one group. Runs that were
    # already running count as one attempt; queued ones were queued when created.
    op.execute(
        "UPDATE runs SET group_id = 'experiment-' || CAST(experiment_id AS VARCHAR(20)), "
        "queued_at = created_at"
    )
    op.execute("UPDATE runs SET attempt = 1 WHERE started_at IS NOT NULL")

    with op.batch_alter_table("runs") as batch:
        batch.alter_column("group_id", existing_type=sa.String(length=64), nullable=False)
        batch.create_index(batch.f("ix_runs_group_id"), ["group_id"], unique=False)

    op.create_table(
        "run_transitions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_run_transitions_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_transitions")),
    )
    op.create_index(op.f("ix_run_transitions_run_id"), "run_transitions", ["run_id"], unique=False)

    op.create_table(
        "run_logs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_run_logs_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_logs")),
    )
    op.create_index("ix_run_logs_run_id_id", "run_logs", ["run_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_run_logs_run_id_id", table_name="run_logs")
    op.drop_table("run_logs")
    op.drop_index(op.f("ix_run_transitions_run_id"), table_name="run_transitions")
    op.drop_table("run_transitions")
    with op.batch_alter_table("runs") as batch:
        batch.drop_index(batch.f("ix_runs_group_id"))
        for column in (
            "lease",
            "worker",
            "recoveries",
            "attempt",
            "claimed_at",
            "task_id",
            "sent_at",
            "queued_at",
            "time_limit_s",
            "sweep",
            "group_id",
        ):
            batch.drop_column(column)
