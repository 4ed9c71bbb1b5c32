"""SQL tables: users, experiments, runs, the per-run event rows the worker writes, and each
run's status history and log lines.

Event tables carry unique keys because a resumed round re-emits its events; writes go
through ``backend.services.events`` as upserts, so a repeat replaces instead of duplicating.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Double,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Deterministic constraint names, so that later migrations can refer to them by name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that always comes back timezone-aware in UTC.

    SQLite stores no offset, so without this the API would serve naive times for SQLite
    and aware ones for PostgreSQL.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class FiniteFloat(TypeDecorator[float]):
    """A measured value; NaN and infinity (a diverged run) are stored as NULL.

    SQLite turns NaN into NULL by itself and PostgreSQL keeps it, so without this the same
    run read back differently on each, and a NOT NULL column refused a diverged run's rows.
    The API serves a non-finite value as null either way.
    """

    impl = Double
    cache_ok = True

    def process_bind_param(self, value: float | None, dialect: Dialect) -> float | None:
        return value if value is not None and math.isfinite(value) else None


# Ids are never handed out twice, even after the newest row was deleted: a deleted run's id
# may still sit in a bookmark, a script or a log, and must not come to mean another run.
# SQLite otherwise reuses the largest deleted rowid; PostgreSQL's sequences never do.
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})
ACTIVE_STATUSES = frozenset({RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.CANCELLING})


class User(Base):
    __tablename__ = "users"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the token
    token_prefix: Mapped[str | None] = mapped_column(String(12))
    """The token's first characters: enough to tell which token a user holds, not to use it."""
    is_admin: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class Experiment(Base):
    __tablename__ = "experiments"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    preset: Mapped[str] = mapped_column(String(500))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    spec: Mapped[dict[str, Any]]  # the submitted request body, as received
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    owner: Mapped[User] = relationship(lazy="joined")
    runs: Mapped[list[Run]] = relationship(
        back_populates="experiment", order_by="Run.id", cascade="all, delete-orphan"
    )

    @property
    def owner_name(self) -> str:
        return self.owner.name


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(primary_key=True)
    experiment_id: Mapped[int] = mapped_column(
        ForeignKey("experiments.id", ondelete="CASCADE"), index=True
    )
    algorithm: Mapped[str] = mapped_column(String(50), index=True)
    seed: Mapped[int]
    config: Mapped[dict[str, Any]]  # the fully resolved RunConfig, model_dump(mode="json")
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.QUEUED, index=True)
    stage: Mapped[str | None] = mapped_column(String(16))
    round: Mapped[int] = mapped_column(default=0)
    total_rounds: Mapped[int]
    progress: Mapped[float] = mapped_column(default=0.0)  # 0..1
    eta_s: Mapped[float | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    workdir: Mapped[str | None] = mapped_column(String(1000))

    group_id: Mapped[str] = mapped_column(String(64), index=True)
    """Shared by the runs of one experiment (its sweep); they share the preprocessing cache."""
    sweep: Mapped[dict[str, Any] | None]  # this run's values of the experiment's sweep keys
    time_limit_s: Mapped[float | None]  # limit per attempt; None: the settings' default
    queued_at: Mapped[datetime | None]  # when it last became queued
    sent_at: Mapped[datetime | None]  # when its last message went to the broker
    task_id: Mapped[str | None] = mapped_column(String(64))  # that message's Celery task id
    claimed_at: Mapped[datetime | None]  # when the current attempt started
    attempt: Mapped[int] = mapped_column(default=0)
    """Incremented by every claim: the fencing token of the worker that owns the run."""
    recoveries: Mapped[int] = mapped_column(default=0)
    """Worker losses since the run last completed a round (or was retried)."""
    worker: Mapped[str | None] = mapped_column(String(255))  # who runs it: node name and pid
    lease: Mapped[str | None] = mapped_column(String(255))  # the owner process, see services.leases

    experiment: Mapped[Experiment] = relationship(back_populates="runs", lazy="joined")

    @property
    def experiment_name(self) -> str:
        return self.experiment.name

    @property
    def preset(self) -> str:
        return self.experiment.preset


METRIC_SERIES_ORDER = ("run_id", "client", "task", "model", "split", "metric", "stage", "round")


class Metric(Base):
    """One value of one metric: one model on one client's task at one round."""

    __tablename__ = "metrics"
    __table_args__ = (
        UniqueConstraint("run_id", "stage", "round", "client", "task", "model", "split", "metric"),
        # The order /metrics serves (one series after another), so a client's rows or a
        # whole run come straight off the index; and the series the compare view reads.
        Index("ix_metrics_series", *METRIC_SERIES_ORDER),
        Index("ix_metrics_compare", "run_id", "model", "split", "metric", "client", "task"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    round: Mapped[int]
    stage: Mapped[str] = mapped_column(String(16))
    client: Mapped[int]
    task: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(16))
    split: Mapped[str] = mapped_column(String(16))
    metric: Mapped[str] = mapped_column(String(100))
    value: Mapped[float | None] = mapped_column(FiniteFloat)  # null: not finite
    n: Mapped[int]  # test samples the value averages over


class TrainingLoss(Base):
    """Mean loss of one task over one client's local training in one round."""

    __tablename__ = "training_losses"
    __table_args__ = (
        UniqueConstraint("run_id", "stage", "round", "client", "model", "task"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    stage: Mapped[str] = mapped_column(String(16))
    round: Mapped[int]
    client: Mapped[int]
    model: Mapped[str] = mapped_column(String(16))
    task: Mapped[str] = mapped_column(String(200))
    loss: Mapped[float | None] = mapped_column(FiniteFloat)  # null: not finite
    steps: Mapped[int]


STEP_KEY = ("run_id", "stage", "round", "client", "model", "step", "term", "task")
STEP_SERIES_ORDER = ("run_id", "client", "model", "stage", "round", "step", "term", "task")
TASK_LOSS_TERM = "task"
"""The ``term`` of a task's own loss; other terms are the algorithm's (``kd``, …)."""


class TrainingStepLoss(Base):
    """One value of one optimizer step of a stage-2 fine-tuning: a task's loss (term
    ``task``) or a term the algorithm adds to it, as added (TAP's λ·KD per task; task ``""``
    for a term of the whole micro-batch, e.g. DisentAFL's orthogonality)."""

    __tablename__ = "training_steps"
    __table_args__ = (
        # Named: the convention's name is one character over PostgreSQL's 63.
        UniqueConstraint(*STEP_KEY, name="uq_training_steps_key"),
        # The order /steps serves: one client's curves after another, each in step order.
        Index("ix_training_steps_series", *STEP_SERIES_ORDER),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    stage: Mapped[str] = mapped_column(String(16))
    round: Mapped[int]
    client: Mapped[int]
    model: Mapped[str] = mapped_column(String(16))
    step: Mapped[int]  # 1-based optimizer step of this fine-tuning
    micro_batches: Mapped[int]  # the step's micro-batches, which the values average over
    term: Mapped[str] = mapped_column(String(100))
    task: Mapped[str] = mapped_column(String(200))
    value: Mapped[float | None] = mapped_column(FiniteFloat)  # null: not finite


class Replacement(Base):
    """A TAP replacement decision: the personal model took over parameters of a task."""

    __tablename__ = "replacements"
    __table_args__ = (UniqueConstraint("run_id", "round", "client", "task"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    round: Mapped[int]
    client: Mapped[int]
    task: Mapped[str] = mapped_column(String(200))
    global_loss: Mapped[float]
    personal_loss: Mapped[float]
    margin: Mapped[float]
    parameters_copied: Mapped[int]


TRAFFIC_KEY = ("run_id", "round", "client", "direction")


class RoundTraffic(Base):
    """Bytes one client received (``down``) or uploaded (``up``) in one FL round: the
    trainable tensors of its sub-model. A repeated round after a resume overwrites its row."""

    __tablename__ = "round_traffic"
    __table_args__ = (UniqueConstraint(*TRAFFIC_KEY), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    round: Mapped[int]
    client: Mapped[int]
    direction: Mapped[str] = mapped_column(String(8))
    bytes: Mapped[int] = mapped_column(BigInteger)
    parameters: Mapped[int] = mapped_column(BigInteger)


class RunTransition(Base):
    """One change of a run's status: when, from what, to what and why."""

    __tablename__ = "run_transitions"
    __table_args__ = NEVER_REUSE_IDS

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    from_status: Mapped[str | None] = mapped_column(String(16))  # None: the run was created
    to_status: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int]
    reason: Mapped[str | None] = mapped_column(Text)


class RunLog(Base):
    """One log line of a run: the engine's and the worker's logging while it ran, and the
    lifecycle's own notes (queued, taken by a worker, cancelled, re-queued, failed)."""

    __tablename__ = "run_logs"
    __table_args__ = (Index("ix_run_logs_run_id_id", "run_id", "id"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(primary_key=True)  # served as ``seq``: increases per run
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    time: Mapped[datetime] = mapped_column(default=utcnow)
    level: Mapped[str] = mapped_column(String(8))
    source: Mapped[str] = mapped_column(String(16))  # api, worker, engine, reconciler
    attempt: Mapped[int | None]
    message: Mapped[str] = mapped_column(Text)
