"""Stage 2 step by step, and stage 2 counted in micro-batches.

``training_steps`` holds one row per value of each stage-2 optimizer step (the engine's
``training_step`` events): each task's loss (term ``task``) and each term the algorithm
adds (TAP's λ·KD per task). ``ix_training_steps_series`` is the order ``/steps`` serves.

The engine renamed ``post_steps`` (optimizer steps) to ``post_iterations`` (micro-batches,
an optimizer step every ``grad_accum`` of them) and refuses the old name. Every stored run
config is rewritten so that it still validates and keeps exactly its old stage-2 length:
``post_iterations = post_steps * grad_accum``. Downgrade goes back with
``post_steps = ceil(post_iterations / grad_accum)``. Experiments keep their request bodies
(``experiments.spec``) as they were received.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 01:50:00
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEY = ["run_id", "stage", "round", "client", "model", "step", "term", "task"]
_SERIES = ["run_id", "client", "model", "stage", "round", "step", "term", "task"]
_GRAD_ACCUM_DEFAULT = 4  # RunConfig's default when a stored config does not say
# A plain table: a revision must not import application models that later change.
_runs = sa.table("runs", sa.column("id", sa.Integer()), sa.column("config", sa.JSON()))


def upgrade() -> None:
    op.create_table(
        "training_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("client", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(length=16), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("micro_batches", sa.Integer(), nullable=False),
        sa.Column("term", sa.String(length=100), nullable=False),
        sa.Column("task", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_training_steps_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_steps")),
        sa.UniqueConstraint(*_KEY, name="uq_training_steps_key"),
    )
    op.create_index("ix_training_steps_series", "training_steps", _SERIES, unique=False)
    _rewrite_configs("post_steps", _to_iterations)


def downgrade() -> None:
    _rewrite_configs("post_iterations", _to_steps)
    op.drop_index("ix_training_steps_series", table_name="training_steps")
    op.drop_table("training_steps")


def _to_iterations(config: dict[str, Any]) -> dict[str, Any]:
    steps = config["post_steps"]
    iterations = None if steps is None else steps * _grad_accum(config)
    return _renamed(config, "post_steps", "post_iterations", iterations)


def _to_steps(config: dict[str, Any]) -> dict[str, Any]:
    iterations = config["post_iterations"]
    steps = None if iterations is None else math.ceil(iterations / _grad_accum(config))
    return _renamed(config, "post_iterations", "post_steps", steps)


def _grad_accum(config: dict[str, Any]) -> int:
    return int(config.get("grad_accum") or _GRAD_ACCUM_DEFAULT)


def _renamed(config: dict[str, Any], old: str, new: str, value: Any) -> dict[str, Any]:
    """``config`` with ``old`` replaced by ``new`` in the same place (a config stays as
    readable as it was); a ``None`` value is dropped, so the engine's default applies."""
    out: dict[str, Any] = {}
    for key, current in config.items():
        if key == old:
            if value is not None:
                out[new] = value
        elif key != new:
            out[key] = current
    return out


def _rewrite_configs(key: str, rewrite: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Apply ``rewrite`` to every stored run config that has the top-level ``key``."""
    connection = op.get_bind()
    # The text match only narrows the rows read; the dict test below decides.
    candidates = sa.select(_runs.c.id, _runs.c.config).where(
        sa.cast(_runs.c.config, sa.Text()).like(f'%"{key}"%')
    )
    for run_id, config in connection.execute(candidates).all():
        if isinstance(config, dict) and key in config:
            connection.execute(
                _runs.update().where(_runs.c.id == run_id).values(config=rewrite(config))
            )
