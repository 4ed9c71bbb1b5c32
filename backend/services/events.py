"""Writing the engine's events to SQL.

A run resumed from a checkpoint re-emits the events of the round it repeats, so every
row is written as an upsert on the table's unique key: a repeat replaces the old values
(the resumed run's numbers are the ones its later rounds build on) instead of adding rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from backend.models import (
    STEP_KEY,
    TASK_LOSS_TERM,
    TRAFFIC_KEY,
    Base,
    Metric,
    Replacement,
    RoundTraffic,
    Run,
    TrainingLoss,
    TrainingStepLoss,
    utcnow,
)
from tap_engine import events as ev

METRIC_KEY = ("run_id", "stage", "round", "client", "task", "model", "split", "metric")
LOSS_KEY = ("run_id", "stage", "round", "client", "model", "task")
REPLACEMENT_KEY = ("run_id", "round", "client", "task")


def upsert(
    session: Session, model: type[Base], rows: list[dict[str, Any]], key: tuple[str, ...]
) -> None:
    """INSERT ... ON CONFLICT (key) DO UPDATE, in the dialect of the session's database."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}.get(dialect)
    if insert is None:
        raise NotImplementedError(f"no upsert for {dialect}; use SQLite or PostgreSQL")
    stmt = insert(model).values(rows)
    changed = {c: stmt.excluded[c] for c in rows[0] if c not in key}
    session.execute(stmt.on_conflict_do_update(index_elements=list(key), set_=changed))


def record_event(
    session: Session, run_id: int, event: ev.Event, attempt: int | None = None
) -> None:
    """Store one event; the caller commits.

    With ``attempt``, the run row's progress is updated only while the run still belongs to
    that attempt (a worker presumed lost must not move a run another worker took over);
    event rows are idempotent and are written either way.
    """
    match event:
        case ev.Evaluation():
            row = event.model_dump(exclude={"type"})
            upsert(session, Metric, [{"run_id": run_id, **row}], METRIC_KEY)
        case ev.LocalTraining():
            rows = [
                {
                    "run_id": run_id,
                    "stage": event.stage,
                    "round": event.round,
                    "client": event.client,
                    "model": event.model,
                    "task": task,
                    "loss": loss,
                    "steps": event.steps,
                }
                for task, loss in event.losses.items()
            ]
            upsert(session, TrainingLoss, rows, LOSS_KEY)
        case ev.TrainingStep():
            upsert(session, TrainingStepLoss, _step_rows(run_id, event), STEP_KEY)
        case ev.Replacement():
            row = event.model_dump(exclude={"type"})
            upsert(session, Replacement, [{"run_id": run_id, **row}], REPLACEMENT_KEY)
        case ev.RoundTraffic():
            row = event.model_dump(exclude={"type"})
            upsert(session, RoundTraffic, [{"run_id": run_id, **row}], TRAFFIC_KEY)
        case ev.RunStarted():
            _update_run(
                session,
                run_id,
                attempt,
                stage="fl",
                round=event.resumed_from_round,
                total_rounds=event.total_rounds,
            )
        case ev.RoundStarted():
            _update_run(session, run_id, attempt, stage="fl", round=event.round)
        case ev.Progress():
            _update_run(
                session,
                run_id,
                attempt,
                stage=event.stage,
                round=event.round,
                total_rounds=event.total_rounds,
                progress=min(max(event.fraction, 0.0), 1.0),
                eta_s=event.eta_s,
            )
        case ev.RunFinished():
            pass  # the task records the outcome once the engine has returned


def _step_rows(run_id: int, event: ev.TrainingStep) -> list[dict[str, Any]]:
    """A row per task loss (term ``task``) and per term and task of ``extra_losses``."""
    values = [(TASK_LOSS_TERM, task, loss) for task, loss in event.losses.items()]
    values += [
        (term, task, value)
        for term, per_task in event.extra_losses.items()
        for task, value in per_task.items()
    ]
    step = event.model_dump(include={"stage", "round", "client", "model", "step", "micro_batches"})
    return [
        {"run_id": run_id, **step, "term": term, "task": task, "value": value}
        for term, task, value in values
    ]


def _update_run(session: Session, run_id: int, attempt: int | None, **values: Any) -> None:
    query = update(Run).where(Run.id == run_id)
    if attempt is not None:
        query = query.where(Run.attempt == attempt)
    session.execute(query.values(heartbeat_at=utcnow(), **values))
