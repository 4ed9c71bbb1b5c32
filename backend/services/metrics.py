"""Reading a run's metric, training-loss and stage-2 step rows, as JSON pages or CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic_core import to_json
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from backend.models import (
    STEP_SERIES_ORDER,
    Metric,
    Replacement,
    RoundTraffic,
    TrainingLoss,
    TrainingStepLoss,
)
from backend.schemas import LossFilter, MetricFilter, StepFilter

METRIC_COLUMNS = ("round", "stage", "client", "task", "model", "split", "metric", "value", "n")
# One series after another, each in time order ("fl" sorts before "post").
_METRIC_ORDER = ("client", "task", "model", "split", "metric", "stage", "round")

Row = TypeVar("Row")


def _page(
    session: Session, query: Select[tuple[Row]], limit: int | None, offset: int
) -> tuple[list[Row], int]:
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.limit(limit).offset(offset)).all()
    return list(rows), total


def _metric_query(run_id: int, f: MetricFilter) -> Select[tuple[Metric]]:
    query = select(Metric).where(Metric.run_id == run_id)
    for field in ("client", "task", "model", "split", "metric", "stage"):
        value = getattr(f, field)
        if value is not None:
            query = query.where(getattr(Metric, field) == value)
    if f.round_min is not None:
        query = query.where(Metric.round >= f.round_min)
    if f.round_max is not None:
        query = query.where(Metric.round <= f.round_max)
    return query.order_by(*(getattr(Metric, c) for c in _METRIC_ORDER))


def query_metrics(
    session: Session, run_id: int, f: MetricFilter, limit: int | None, offset: int = 0
) -> tuple[list[Metric], int]:
    return _page(session, _metric_query(run_id, f), limit, offset)


def metric_rows(
    session: Session, run_id: int, f: MetricFilter, limit: int | None, offset: int = 0
) -> tuple[list[tuple[Any, ...]], int]:
    """The rows of ``query_metrics`` as plain tuples in ``METRIC_COLUMNS`` order, and the
    total. A whole run is 100k+ rows: ORM objects and per-row validation would cost seconds,
    tuples straight off the series index cost a fraction of that."""
    query = _metric_query(run_id, f)
    total = session.scalar(query.with_only_columns(func.count()).order_by(None)) or 0
    columns = [getattr(Metric, c) for c in METRIC_COLUMNS]
    rows = session.execute(query.with_only_columns(*columns).limit(limit).offset(offset))
    return [tuple(row) for row in rows], total


def metrics_page_json(rows: Sequence[tuple[Any, ...]], total: int) -> bytes:
    """``{"items": [...], "total": N}`` as ``/metrics`` serves it (the shape of MetricOut)."""
    items = [dict(zip(METRIC_COLUMNS, row, strict=True)) for row in rows]
    return to_json({"items": items, "total": total})


def metrics_csv(rows: Sequence[Metric] | Sequence[tuple[Any, ...]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(METRIC_COLUMNS)
    if rows and isinstance(rows[0], Metric):
        writer.writerows([getattr(row, c) for c in METRIC_COLUMNS] for row in rows)
    else:
        writer.writerows(rows)
    return out.getvalue()


def query_losses(
    session: Session, run_id: int, f: LossFilter, limit: int | None, offset: int = 0
) -> tuple[list[TrainingLoss], int]:
    query = select(TrainingLoss).where(TrainingLoss.run_id == run_id)
    for field in ("client", "task", "model", "stage"):
        value = getattr(f, field)
        if value is not None:
            query = query.where(getattr(TrainingLoss, field) == value)
    order = ("client", "task", "model", "stage", "round")
    return _page(session, query.order_by(*(getattr(TrainingLoss, c) for c in order)), limit, offset)


def query_steps(
    session: Session, run_id: int, f: StepFilter, limit: int | None, offset: int = 0
) -> tuple[list[TrainingStepLoss], int]:
    """Stage-2 step values in the order of ``ix_training_steps_series``: per client and
    model one fine-tuning after another, each in step order."""
    query = select(TrainingStepLoss).where(TrainingStepLoss.run_id == run_id)
    for field in ("client", "model", "stage", "term", "task"):
        value = getattr(f, field)
        if value is not None:
            query = query.where(getattr(TrainingStepLoss, field) == value)
    order = (getattr(TrainingStepLoss, c) for c in STEP_SERIES_ORDER[1:])
    return _page(session, query.order_by(*order), limit, offset)


def query_replacements(
    session: Session,
    run_id: int,
    client: int | None,
    task: str | None,
    limit: int | None,
    offset: int = 0,
) -> tuple[list[Replacement], int]:
    query = select(Replacement).where(Replacement.run_id == run_id)
    if client is not None:
        query = query.where(Replacement.client == client)
    if task is not None:
        query = query.where(Replacement.task == task)
    order = (Replacement.round, Replacement.client, Replacement.task)
    return _page(session, query.order_by(*order), limit, offset)


def query_traffic(
    session: Session,
    run_id: int,
    client: int | None,
    direction: str | None,
    limit: int | None,
    offset: int = 0,
) -> tuple[list[RoundTraffic], int]:
    query = select(RoundTraffic).where(RoundTraffic.run_id == run_id)
    if client is not None:
        query = query.where(RoundTraffic.client == client)
    if direction is not None:
        query = query.where(RoundTraffic.direction == direction)
    order = (RoundTraffic.round, RoundTraffic.client, RoundTraffic.direction)
    return _page(session, query.order_by(*order), limit, offset)
