"""Communication cost: ``round_traffic`` holds the engine's ``round_traffic`` events.

One row per run, FL round, client and direction (``down``: server to client, ``up``: client
to server): the bytes and scalars of the trainable tensors that crossed. Runs stored before
this revision have no rows; their traffic is not reconstructed.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 06:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "round_traffic",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("client", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("parameters", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_round_traffic_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_round_traffic")),
        sa.UniqueConstraint(
            "run_id",
            "round",
            "client",
            "direction",
            name=op.f("uq_round_traffic_run_id_round_client_direction"),
        ),
        # As every table since 0005: SQLite never reuses an id.
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("round_traffic")
