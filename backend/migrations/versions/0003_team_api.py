"""Team API: token prefixes to tell tokens apart, and indexes for the metric queries.

``ix_metrics_series`` holds the metric rows in the order ``/runs/{id}/metrics`` serves them
(client, task, model, split, metric, stage, round), so one client's rows or a whole run are
read off the index without a sort; it replaces ``ix_metrics_run_id_client_task``, of which
it is an extension. ``ix_metrics_compare`` serves ``/compare`` (one model, split and metric
of many runs).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 18:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SERIES = ["run_id", "client", "task", "model", "split", "metric", "stage", "round"]
_COMPARE = ["run_id", "model", "split", "metric", "client", "task"]


def upgrade() -> None:
    op.add_column("users", sa.Column("token_prefix", sa.String(length=12), nullable=True))
    op.drop_index("ix_metrics_run_id_client_task", table_name="metrics")
    op.create_index("ix_metrics_series", "metrics", _SERIES)
    op.create_index("ix_metrics_compare", "metrics", _COMPARE)
    op.create_index("ix_runs_algorithm", "runs", ["algorithm"])


def downgrade() -> None:
    op.drop_index("ix_runs_algorithm", table_name="runs")
    op.drop_index("ix_metrics_compare", table_name="metrics")
    op.drop_index("ix_metrics_series", table_name="metrics")
    op.create_index("ix_metrics_run_id_client_task", "metrics", ["run_id", "client", "task"])
    # A plain ALTER TABLE DROP COLUMN (SQLite >= 3.35): a batch copy of ``users`` would
    # break the experiments' foreign keys.
    op.drop_column("users", "token_prefix")
